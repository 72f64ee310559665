"""What normalizing one raw frame yields: trades, a control frame to ignore, or a rejection.

Three outcomes, never an exception for bad input:

* ``tuple[Trade, ...]`` — the trades the frame carries, in frame order. May be
  empty: a trade frame with an empty ``data`` array (Kraken does send them) is
  valid and simply carries nothing.
* ``Ignored(kind)`` — a well-formed control frame that carries no trades
  (heartbeat, status, subscription ack, pong). Not an error: the agent counts
  it and moves on; nothing goes to the DLQ.
* ``Rejection(code, message)`` — the frame is not a valid trade frame. The
  agent sends the raw bytes, unchanged, to the DLQ with the code and message
  in headers. One bad trade rejects the whole frame: a frame is the unit of
  the raw topic and of the DLQ, and emitting part of it would make the DLQ
  record ambiguous (which trades were kept?). Replaying a fixed frame from the
  DLQ then yields all its trades once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from records import Trade

# --- rejection codes (the DLQ's error-code header values) -----------------
MALFORMED_JSON = "malformed_json"  # not UTF-8 JSON at all
UNSUPPORTED_MESSAGE = "unsupported_message"  # valid JSON, but no frame kind we normalize (aggTrade, book, ...)
MISSING_FIELD = "missing_field"  # a field the trade needs is absent (never guessed)
WRONG_TYPE = "wrong_type"  # a field has the wrong JSON type ("1" for a number, true for an int, 1.5 for a string)
BAD_VALUE = "bad_value"  # right type, value outside its domain (side "hold", negative trade id)
UNKNOWN_SYMBOL = "unknown_symbol"  # symbol not in the configured symbol map
BAD_PRICE = "bad_price"  # price not a positive decimal that fits decimal(38,18) exactly
BAD_QUANTITY = "bad_quantity"  # quantity not a positive decimal that fits decimal(38,18) exactly
BAD_TIME = "bad_time"  # unparsable, before 2009-01-01, or later than now + allowed clock skew

REJECTION_CODES: frozenset[str] = frozenset(
    (
        MALFORMED_JSON,
        UNSUPPORTED_MESSAGE,
        MISSING_FIELD,
        WRONG_TYPE,
        BAD_VALUE,
        UNKNOWN_SYMBOL,
        BAD_PRICE,
        BAD_QUANTITY,
        BAD_TIME,
    )
)

# --- kinds of ignored control frames ----------------------------------------
HEARTBEAT = "heartbeat"
STATUS = "status"
SUBSCRIPTION = "subscription"  # subscribe/unsubscribe acks, including failed ones
PONG = "pong"
ERROR = "error"  # an exchange error response to a request of ours (not market data)

IGNORED_KINDS: frozenset[str] = frozenset((HEARTBEAT, STATUS, SUBSCRIPTION, PONG, ERROR))


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a frame was rejected: a code from ``REJECTION_CODES`` and a message naming field and value."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A control frame that carries no trades; ``kind`` is one of ``IGNORED_KINDS``."""

    kind: str


Result = Union[tuple[Trade, ...], Ignored, Rejection]


class Reject(Exception):
    """Internal: raised inside a normalizer to unwind to its single ``except``; never escapes it."""

    __slots__ = ("code", "message")

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message

    def rejection(self) -> Rejection:
        return Rejection(self.code, self.message)


def show(value: object, limit: int = 80) -> str:
    """A short repr of a value for messages (raw frames can be large)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
