"""A private single-node Kafka for tests that stop and restart a broker (the shared one must stay up).

It runs from the cached jars (``streamapp.stack.kafka.prepare``) on free ports in a tmp dir.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from streamapp.settings import Settings
from streamapp.stack import kafka
from tests.integration.processes import free_port




def wait_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"private broker did not listen on {port} in {timeout_s}s")


class PrivateBroker:
    def __init__(self, home: Path):
        self.settings = Settings(home=home, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
                                 kafka_controller_port=free_port(), kafka_heap="384m", topic_partitions=3)
        self.command = kafka.prepare(self.settings)
        self.log = home / "kafka.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        began = time.monotonic()
        self.proc = subprocess.Popen(self.command, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        wait_port(self.settings.broker_host_port[1], 60)
        return time.monotonic() - began

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
