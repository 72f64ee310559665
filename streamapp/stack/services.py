"""The local stack's services as background processes: start, health, stop, logs.

Each service runs detached in its own session; its pid lives in
``<home>/run/<name>.pid`` and its output in ``<home>/logs/<name>.log``, so any
later ``streamapp stack …`` can find it again.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx

from streamapp.errors import StreamappError
from streamapp.settings import Settings
from streamapp.stack import kafka

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Service:
    name: str
    describe: str
    host_port: Callable[[Settings], tuple[str, int]]
    command: Callable[[Settings], list[str]]
    healthy: Callable[[Settings], bool]
    port_setting: str  # the variable to change when the port is taken


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    address: str
    running: bool
    healthy: bool
    rss_mb: float | None  # resident memory, from /proc


def _rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _broker_healthy(settings: Settings) -> bool:
    from confluent_kafka.admin import AdminClient

    host, port = settings.broker_host_port
    if not _port_open(host, port):
        return False
    admin = AdminClient({"bootstrap.servers": f"{host}:{port}", "socket.timeout.ms": 2000})
    try:
        admin.list_topics(timeout=2)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not yet healthy"
        return False


def _registry_auth(settings: Settings) -> tuple[str, str] | None:
    if settings.schema_registry_username and settings.schema_registry_password:
        return settings.schema_registry_username, settings.schema_registry_password.get_secret_value()
    return None


def http_ok(url: str, auth: tuple[str, str] | None = None) -> bool:
    try:
        return httpx.get(url, timeout=2, auth=auth).status_code == 200
    except httpx.HTTPError:
        return False


def _python_module(module: str) -> Callable[[Settings], list[str]]:
    return lambda settings: [sys.executable, "-m", module]


def streamapp_command(*args: str) -> list[str]:
    """``streamapp <args>`` with this interpreter (works before the entry point is on PATH)."""
    return [sys.executable, "-m", "streamapp.cli", *args]


SERVICES: tuple[Service, ...] = (
    Service(
        name="broker",
        describe="Apache Kafka (KRaft, single node)",
        host_port=lambda s: s.broker_host_port,
        command=kafka.prepare,
        healthy=_broker_healthy,
        port_setting="STREAMAPP_KAFKA_BOOTSTRAP_SERVERS",
    ),
    Service(
        name="registry",
        describe="schema registry (Confluent REST API)",
        host_port=lambda s: s.registry_host_port,
        command=_python_module("streamapp.stack.registry"),
        healthy=lambda s: http_ok(f"{s.schema_registry_url.rstrip('/')}/subjects", _registry_auth(s)),
        port_setting="STREAMAPP_SCHEMA_REGISTRY_URL",
    ),
    Service(
        name="warehouse",
        describe="embedded ClickHouse (chdb) over HTTP",
        host_port=lambda s: s.clickhouse_host_port,
        command=_python_module("streamapp.stack.warehouse"),
        healthy=lambda s: http_ok(f"http://{_addr(s.clickhouse_host_port)}/ping"),
        port_setting="STREAMAPP_CLICKHOUSE_URL",
    ),
)


def service(name: str) -> Service:
    for svc in SERVICES:
        if svc.name == name:
            return svc
    raise StreamappError(f"unknown service {name!r}: choose one of {', '.join(s.name for s in SERVICES)}")


def _addr(host_port: tuple[str, int]) -> str:
    return f"{host_port[0]}:{host_port[1]}"


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def pid_file(settings: Settings, name: str) -> Path:
    return settings.home / "run" / f"{name}.pid"


def log_file(settings: Settings, name: str) -> Path:
    return settings.home / "logs" / f"{name}.log"


def read_pid(settings: Settings, name: str) -> int | None:
    """The pid of our running service, or None (a stale pid file is removed)."""
    path = pid_file(settings, name)
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if _alive(pid):
        return pid
    path.unlink(missing_ok=True)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this very process counts as dead.
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True


def log_tail(settings: Settings, name: str, lines: int = 25) -> str:
    path = log_file(settings, name)
    if not path.exists():
        return "(no log yet)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def status(settings: Settings, which: tuple[Service, ...] = SERVICES) -> list[ServiceStatus]:
    result = []
    for svc in which:
        pid = read_pid(settings, svc.name)
        result.append(ServiceStatus(
            name=svc.name, pid=pid, address=_addr(svc.host_port(settings)),
            running=pid is not None, healthy=pid is not None and svc.healthy(settings),
            rss_mb=_rss_mb(pid),
        ))
    return result


def start(settings: Settings, svc: Service, *, timeout_s: float) -> float:
    """Start ``svc`` unless it already runs; wait until healthy. Returns seconds waited."""
    began = time.monotonic()
    if read_pid(settings, svc.name) is not None:
        if _wait_healthy(settings, svc, timeout_s):
            return time.monotonic() - began
        raise StreamappError(
            f"{svc.name} is running (pid {read_pid(settings, svc.name)}) but not healthy after {timeout_s:.0f}s; "
            f"see `streamapp stack logs {svc.name}`, or `streamapp stack down` and up again.\n"
            f"{log_tail(settings, svc.name)}"
        )
    host, port = svc.host_port(settings)
    if _port_open(host, port):
        raise StreamappError(
            f"cannot start {svc.name}: {host}:{port} is already in use by another process "
            f"(not this stack's, whose data dir is {settings.home}). Stop that process, "
            f"or move {svc.name} to a free port with {svc.port_setting}."
        )
    command = svc.command(settings)
    logs = log_file(settings, svc.name)
    logs.parent.mkdir(parents=True, exist_ok=True)
    pid_file(settings, svc.name).parent.mkdir(parents=True, exist_ok=True)
    with logs.open("ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(command)}\n".encode())
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=_service_env(settings),
        )
    pid_file(settings, svc.name).write_text(str(proc.pid))
    if not _wait_healthy(settings, svc, timeout_s, proc=proc):
        stop(settings, svc)
        raise StreamappError(
            f"{svc.name} ({svc.describe}) did not become healthy within {timeout_s:.0f}s at "
            f"{host}:{port}; last lines of {logs}:\n{log_tail(settings, svc.name)}"
        )
    return time.monotonic() - began


def _service_env(settings: Settings) -> dict[str, str]:
    """The services read the same settings: pass the resolved data dir explicitly."""
    env = dict(os.environ)
    env["STREAMAPP_HOME"] = str(settings.home.resolve())
    return env


def _wait_healthy(settings: Settings, svc: Service, timeout_s: float, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if svc.healthy(settings):
            return True
        time.sleep(0.25)
    return False


def stop(settings: Settings, svc: Service, *, timeout_s: float = 30.0) -> bool:
    """Stop ``svc`` with SIGTERM (SIGKILL after ``timeout_s``). Returns whether it was running."""
    pid = read_pid(settings, svc.name)
    if pid is None:
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        log.warning("%s (pid %d) ignored SIGTERM for %.0fs; killing it", svc.name, pid, timeout_s)
        _signal_group(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.1)
    pid_file(settings, svc.name).unlink(missing_ok=True)
    return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def up(settings: Settings, which: tuple[Service, ...] = SERVICES, *,
       on_started: Callable[[Service, float], None] = lambda svc, s: None) -> None:
    """Start every service in dependency order (the registry needs the broker)."""
    for svc in which:
        seconds = start(settings, svc, timeout_s=settings.stack_start_timeout_s)
        on_started(svc, seconds)


def down(settings: Settings, which: tuple[Service, ...] = SERVICES) -> list[str]:
    """Stop every service, the reverse of start order; the data is kept."""
    return [svc.name for svc in reversed(which) if stop(settings, svc)]
