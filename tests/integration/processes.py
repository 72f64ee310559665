"""Start and stop streamapp's own long-running processes in tests, bounded in time."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """``streamapp <args>`` as a child process with its output in ``log``."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamapp.cli", *args], stdout=self._out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def why_it_died(self) -> str:
        """For a failure message: the first crash Faust/mode logged ("Crashed reason=…", with its
        traceback), which a process's shutdown noise pushes out of the log's last lines, and the tail."""
        text = self.output()
        crash = text.find("Crashed reason=")
        first = text[text.rfind("\n", 0, crash) + 1:][:4000] if crash >= 0 else "(no 'Crashed reason' in the log)"
        return f"{first}\n...\n{text[-2000:]}"

    def kill(self) -> None:
        """SIGKILL: a crash, no chance to flush or commit."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout_s: float = 30) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._out.close()
        return self.proc.returncode
