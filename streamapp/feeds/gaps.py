"""Trade-id continuity per symbol: gaps, duplicates (overlapping connections), no I/O.

Binance trade ids are consecutive per symbol; Kraken v2 ``trade_id`` is a per-book
sequence. Both are checked the same way: after id ``n`` the next new id must be ``n + 1``.
The tracker outlives connections, so a gap across a reconnect is found like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Gap:
    symbol: str
    first: int  # first missing id
    last: int   # last missing id (inclusive)

    @property
    def size(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class Observation:
    new: bool                 # at least one id not seen before: publish the frame
    gaps: tuple[Gap, ...] = ()
    duplicates: int = 0       # ids already seen (e.g. received on both connections of an overlap)


@dataclass
class GapTracker:
    last: dict[str, int] = field(default_factory=dict)

    def observe(self, symbol: str, ids: list[int]) -> Observation:
        """Record the ids of one frame; report what is new, what is missing, what is repeated.

        >>> t = GapTracker(); t.observe("BTCUSDT", [10]).gaps
        ()
        >>> t.observe("BTCUSDT", [13, 14]).gaps
        (Gap(symbol='BTCUSDT', first=11, last=12),)
        >>> t.observe("BTCUSDT", [14]).new
        False
        """
        gaps: list[Gap] = []
        duplicates = 0
        new = False
        last = self.last.get(symbol)
        for trade_id in ids:
            if last is None:
                last, new = trade_id, True
            elif trade_id <= last:
                duplicates += 1
            else:
                if trade_id > last + 1:
                    gaps.append(Gap(symbol, last + 1, trade_id - 1))
                last, new = trade_id, True
        if last is not None:
            self.last[symbol] = last
        return Observation(new=new, gaps=tuple(gaps), duplicates=duplicates)
