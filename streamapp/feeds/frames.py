"""What a protocol module tells the transport about one received frame.

A cheap parse only: enough to route (kind), key (exchange symbol) and check trade-id
continuity. The normalizer validates trades fully later.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Kind(str, enum.Enum):
    TRADE = "trade"          # carries trades: published to the raw topic
    ACK = "ack"              # subscription / request acknowledgement
    HEARTBEAT = "heartbeat"
    STATUS = "status"
    PONG = "pong"
    ERROR = "error"          # the exchange reports an error (e.g. a bad subscription)
    SHUTDOWN = "shutdown"    # the server announces it will close the connection soon
    EMPTY = "empty"          # a trade message with no trades in it (e.g. an empty snapshot)
    UNKNOWN = "unknown"      # valid JSON of a type we do not handle
    MALFORMED = "malformed"  # not JSON, or a trade message missing what we need


@dataclass(frozen=True)
class Frame:
    """One classified frame. ``ids`` maps symbol -> trade ids in the frame, in frame order."""

    kind: Kind
    key: str | None = None
    ids: dict[str, list[int]] = field(default_factory=dict)
    # Extra per-symbol context a backfill may need (Kraken: the last trade's time in seconds).
    last_time: dict[str, float] = field(default_factory=dict)
    detail: str = ""
