"""A local stack of its own for a test module (``streamapp stack …`` as a user runs it): its own home
and free ports, so the session's stack is never touched; ``Cluster(home, brokers=3)`` for a
three-node KRaft cluster."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from streamapp.settings import Settings
from streamapp.stack import services
from tests.integration.processes import free_port


def free_block(size: int) -> int:
    """A port p with p .. p+size-1 all free (a cluster's nodes use every second port from p)."""
    for _ in range(50):
        base = free_port()
        ports = range(base, base + size)
        if base + size < 65535 and all(_free(p) for p in ports):
            return base
    raise RuntimeError(f"no {size} consecutive free ports found")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class Cluster:
    """``streamapp stack …`` as a user runs it, against a stack of its own."""

    def __init__(self, home: Path, brokers: int = 3) -> None:
        base = free_block(2 * brokers)
        registry, warehouse = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMAPP_")} | {
            "STREAMAPP_HOME": str(home),
            "STREAMAPP_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{base}",
            "STREAMAPP_KAFKA_CONTROLLER_PORT": str(base + 1),
            "STREAMAPP_SCHEMA_REGISTRY_URL": registry,
            "STREAMAPP_CLICKHOUSE_URL": warehouse,
            "STREAMAPP_KAFKA_HEAP": "256m",
        }
        self.brokers = brokers
        self.settings = services.sized(Settings(home=home, kafka_bootstrap_servers=f"127.0.0.1:{base}",
                                                kafka_controller_port=base + 1, schema_registry_url=registry,
                                                clickhouse_url=warehouse), brokers)

    def up(self) -> str:
        out = self.cli("up", "--brokers", str(self.brokers)).stdout
        names = [f"broker-{k}" for k in range(1, self.brokers + 1)] if self.brokers > 1 else ["broker"]
        for name in (*names, "registry", "warehouse"):
            assert any(line.startswith(name) and "healthy at" in line for line in out.splitlines()), out
        return out

    def client_env(self) -> dict[str, str]:
        """What a process using this stack (worker, feed) needs on top of the test run's environment:
        its addresses, the broker list with every node (a stopped node is not the only way in)."""
        return {**{k: v for k, v in self.env.items() if k.startswith("STREAMAPP_")},
                "STREAMAPP_KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka_bootstrap_servers,
                "STREAMAPP_STACK_BROKERS": str(self.brokers)}

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "streamapp.cli", "stack", *args], env=self.env,
                                capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
        if check:
            assert result.returncode == 0, f"stack {' '.join(args)}: {result.stdout}{result.stderr}"
        return result
