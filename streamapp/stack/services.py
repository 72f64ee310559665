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
from streamapp.stack import kafka, prometheus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Service:
    name: str
    describe: str
    host_port: Callable[[Settings], tuple[str, int]]
    command: Callable[[Settings], list[str]]
    healthy: Callable[[Settings], bool]
    port_setting: str  # the variable to change when the port is taken
    quorum: bool = False  # a cluster's node: all are launched before any is waited for
    env: Callable[[Settings], dict[str, str]] = lambda settings: {}  # its own variables (e.g. ports)
    # The Prometheus job that scrapes its /metrics (on host_port) and the target's labels; None: not scraped.
    scrape: tuple[str, dict[str, str]] | None = None


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


def _broker_healthy(settings: Settings, node: int = 1) -> bool:
    """The node answers on its own address and the cluster lists it (registered, not fenced)."""
    from confluent_kafka.admin import AdminClient

    host, port = settings.stack_broker_host_ports[node - 1]
    if not _port_open(host, port):
        return False
    admin = AdminClient({"bootstrap.servers": f"{host}:{port}", "socket.timeout.ms": 2000})
    try:
        return node in admin.list_topics(timeout=2).brokers
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


def _broker(node: int, of: int) -> Service:
    return Service(
        name="broker" if of == 1 else f"broker-{node}",
        describe="Apache Kafka (KRaft, single node)" if of == 1 else f"Apache Kafka (KRaft node {node} of {of})",
        host_port=lambda s: s.stack_broker_host_ports[node - 1],
        command=lambda s: kafka.prepare(s, node),
        healthy=lambda s: _broker_healthy(s, node),
        port_setting="STREAMAPP_KAFKA_BOOTSTRAP_SERVERS" if node == 1 else "STREAMAPP_KAFKA_BOOTSTRAP_SERVERS (list every node)",
        quorum=of > 1,
    )


_OTHERS: tuple[Service, ...] = (
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

# The one-broker stack (STREAMAPP_STACK_BROKERS=1, the default).
SERVICES: tuple[Service, ...] = (_broker(1, 1), *_OTHERS)

# Optional (`stack up --with-prometheus`): scrapes every process launched with a `scrape` job.
PROMETHEUS = Service(
    name="prometheus",
    describe="Prometheus (scrapes every streamapp process, loads the alert rules)",
    host_port=lambda s: s.prometheus_host_port,
    command=prometheus.command,
    healthy=lambda s: http_ok(f"{s.prometheus_url.rstrip('/')}/-/ready"),
    port_setting="STREAMAPP_PROMETHEUS_URL",
)


def stack_services(settings: Settings, *, with_prometheus: bool = False) -> tuple[Service, ...]:
    """The stack's services in start order: its broker(s), then the registry and the warehouse, then
    Prometheus when asked for (``stack up --with-prometheus``) or while it runs."""
    n = settings.stack_brokers
    extra = (PROMETHEUS,) if with_prometheus or read_pid(settings, PROMETHEUS.name) is not None else ()
    return (*(_broker(node, n) for node in range(1, n + 1)), *_OTHERS, *extra)


def service(settings: Settings, name: str) -> Service:
    names = []
    for svc in stack_services(settings, with_prometheus=True):
        if svc.name == name:
            return svc
        names.append(svc.name)
    raise StreamappError(f"unknown service {name!r}: this stack runs {', '.join(names)} "
                         f"(STREAMAPP_STACK_BROKERS={settings.stack_brokers})")


def sized(settings: Settings, brokers: int) -> Settings:
    """``settings`` for a stack of ``brokers`` nodes, its clients bootstrapping from all of them."""
    if brokers == settings.stack_brokers == 1:
        return settings
    resized = settings.model_copy(update={"stack_brokers": brokers})
    return resized.model_copy(update={"kafka_bootstrap_servers": resized.stack_bootstrap_servers})


def for_stack(settings: Settings) -> Settings:
    """``settings`` with the stack's own size when STREAMAPP_STACK_BROKERS was not given: a stack
    started with ``--brokers 3`` is managed as three nodes by every later ``stack``/``pipeline`` command."""
    if "stack_brokers" in settings.model_fields_set:
        return sized(settings, settings.stack_brokers)
    formatted = kafka.formatted_size(settings)
    return settings if formatted in (None, settings.stack_brokers) else sized(settings, formatted)


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


def status(settings: Settings, which: tuple[Service, ...] | None = None) -> list[ServiceStatus]:
    result = []
    for svc in which if which is not None else stack_services(settings):
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
    proc = launch(settings, svc)
    wait_healthy(settings, svc, timeout_s=timeout_s, proc=proc)
    return time.monotonic() - began


def launch(settings: Settings, svc: Service) -> subprocess.Popen | None:
    """Start ``svc``'s process unless it already runs (then None); do not wait for it."""
    if read_pid(settings, svc.name) is not None:
        return None
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
            start_new_session=True, env=_service_env(settings) | svc.env(settings),
        )
    pid_file(settings, svc.name).write_text(str(proc.pid))
    if svc.scrape is not None:
        job, labels = svc.scrape
        prometheus.register(settings, svc.name, job, labels, host, port)
    return proc


def wait_healthy(settings: Settings, svc: Service, *, timeout_s: float, proc: subprocess.Popen | None) -> None:
    """Wait until ``svc`` is healthy; if it does not become so, say why (and stop what we launched)."""
    host, port = svc.host_port(settings)
    if proc is None:
        if _wait_healthy(settings, svc, timeout_s):
            return
        raise StreamappError(
            f"{svc.name} is running (pid {read_pid(settings, svc.name)}) but not healthy after {timeout_s:.0f}s; "
            f"see `streamapp stack logs {svc.name}`, or `streamapp stack down` and up again.\n"
            f"{log_tail(settings, svc.name)}"
        )
    if not _wait_healthy(settings, svc, timeout_s, proc=proc):
        stop(settings, svc)
        raise StreamappError(
            f"{svc.name} ({svc.describe}) did not become healthy within {timeout_s:.0f}s at "
            f"{host}:{port}; last lines of {log_file(settings, svc.name)}:\n{log_tail(settings, svc.name)}"
        )


def _service_env(settings: Settings) -> dict[str, str]:
    """The services read the same settings: pass the resolved data dir explicitly."""
    env = dict(os.environ)
    env["STREAMAPP_HOME"] = str(settings.home.resolve())
    # A cluster's clients bootstrap from every node, so any one may be stopped.
    env["STREAMAPP_STACK_BROKERS"] = str(settings.stack_brokers)
    if settings.stack_brokers > 1:
        env["STREAMAPP_KAFKA_BOOTSTRAP_SERVERS"] = settings.stack_bootstrap_servers
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
    if svc.scrape is not None:
        prometheus.unregister(settings, svc.name)
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


def up(settings: Settings, which: tuple[Service, ...] | None = None, *,
       on_started: Callable[[Service, float], None] = lambda svc, s: None) -> None:
    """Start every service in dependency order (the registry needs the broker).

    A cluster's nodes are all launched before any is waited for: none is healthy
    before a majority of the controllers runs.
    """
    which = which if which is not None else stack_services(settings)
    i = 0
    while i < len(which):
        group = [which[i]]
        while which[i].quorum and i + len(group) < len(which) and which[i + len(group)].quorum:
            group.append(which[i + len(group)])
        began = time.monotonic()
        launched = [launch(settings, svc) for svc in group]
        for svc, proc in zip(group, launched):
            wait_healthy(settings, svc, timeout_s=settings.stack_start_timeout_s, proc=proc)
            on_started(svc, time.monotonic() - began)
        i += len(group)


def down(settings: Settings, which: tuple[Service, ...] | None = None) -> list[str]:
    """Stop every service (Prometheus too, if it runs), the reverse of start order; the data is kept."""
    which = which if which is not None else stack_services(settings, with_prometheus=True)
    return [svc.name for svc in reversed(which) if stop(settings, svc)]
