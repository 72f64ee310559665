"""Faults the simulator injects: periodic ones (every N trade frames sent on a connection)
from CLI flags, and one-shot ones requested over HTTP (``POST /control/<fault>``)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class Faults:
    drop_every: int = 0          # abort the TCP connection after every N trade frames
    stall_every: int = 0         # go silent (no frames, no replies) for stall_s after every N
    stall_s: float = 5.0
    malformed_every: int = 0     # send a truncated frame after every N
    skip_every: int = 0          # skip skip_count trade frames (ids) after every N
    skip_count: int = 1
    shutdown_every: int = 0      # Binance: send serverShutdown after every N, close shutdown_grace_s later
    shutdown_grace_s: float = 2.0
    max_connection_s: float = 0  # close every connection after this long (Binance's 24 h cut-off)
    pending: deque = field(default_factory=deque)  # one-shot: ("drop"|"stall"|"malformed"|"skip"|"shutdown", arg)

    def request(self, fault: str, arg: float | None = None) -> None:
        if fault not in ("drop", "stall", "malformed", "skip", "shutdown"):
            raise ValueError(f"unknown fault {fault!r}: drop, stall, malformed, skip or shutdown")
        self.pending.append((fault, arg))

    def due(self, sent: int) -> list[tuple[str, float | None]]:
        """Faults to apply after a connection has sent its ``sent``-th trade frame."""
        out: list[tuple[str, float | None]] = []
        while self.pending:
            out.append(self.pending.popleft())

        def every(n: int) -> bool:
            return n > 0 and sent % n == 0

        if every(self.malformed_every):
            out.append(("malformed", None))
        if every(self.skip_every):
            out.append(("skip", float(self.skip_count)))
        if every(self.stall_every):
            out.append(("stall", self.stall_s))
        if every(self.shutdown_every):
            out.append(("shutdown", None))
        if every(self.drop_every):
            out.append(("drop", None))
        return out
