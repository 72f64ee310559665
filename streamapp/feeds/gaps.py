"""Trade-id continuity per symbol: gaps, duplicates (overlapping connections), no I/O.

Binance trade ids are consecutive per symbol; Kraken v2 ``trade_id`` is a per-book
sequence. Both are checked the same way: after id ``n`` the next new id must be ``n + 1``.
The tracker outlives connections, so a gap across a reconnect is found like any other, and
it starts from the last id the raw topic holds (:meth:`GapTracker.resume`), so a gap across
a restart is found too. It stands for what was *published*: a frame the producer refused is
taken back (:meth:`GapTracker.unpublished`), so its ids open the next gap.
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
    first_new: int | None = None  # the first id above what was seen before (None: nothing new)
    last_new: int | None = None


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
        first_new = None
        last = self.last.get(symbol)
        for trade_id in ids:
            if last is not None and trade_id <= last:
                duplicates += 1
                continue
            if last is not None and trade_id > last + 1:
                gaps.append(Gap(symbol, last + 1, trade_id - 1))
            if first_new is None:
                first_new = trade_id
            last = trade_id
        if last is not None:
            self.last[symbol] = last
        return Observation(new=first_new is not None, gaps=tuple(gaps), duplicates=duplicates,
                           first_new=first_new, last_new=last if first_new is not None else None)

    def unpublished(self, symbol: str, first_new: int) -> None:
        """The frame whose new ids began at ``first_new`` was not published: forget them, so the
        next frame reports them as (part of) a gap.

        >>> t = GapTracker(); _ = t.observe("S", [1]); _ = t.observe("S", [2, 3]); t.unpublished("S", 2)
        >>> t.observe("S", [4]).gaps
        (Gap(symbol='S', first=2, last=3),)
        """
        if self.last.get(symbol, first_new) >= first_new:
            self.last[symbol] = first_new - 1

    def resume(self, symbol: str, last_id: int) -> None:
        """Continue after ``last_id`` (the last id published before a restart)."""
        self.last[symbol] = max(last_id, self.last.get(symbol, last_id))
