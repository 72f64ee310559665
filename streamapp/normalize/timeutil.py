"""The one timestamp helper: exchange time formats to integer microseconds since the epoch, UTC.

Exact integer arithmetic only (no float seconds): ``1723161300010`` ms is
``1723161300010000`` µs, and ``"2023-09-25T07:49:37.708706Z"`` is
``1695628177708706`` µs. Each parser raises ``ValueError`` naming the value.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

MIN_TRADE_TIME_US = 1_230_768_000_000_000  # 2009-01-01T00:00:00Z: nothing traded crypto before
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_US_PER_DAY = 86_400_000_000

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_SECONDS = re.compile(r"(\d{1,12})(?:\.(\d{1,9}))?")


def _fraction_us(fraction: str | None, text: str) -> int:
    if not fraction:
        return 0
    if len(fraction) > 6:
        if fraction[6:].strip("0"):
            raise ValueError(f"time {text!r} has sub-microsecond digits; microseconds are the finest unit kept")
        fraction = fraction[:6]
    return int(fraction.ljust(6, "0"))


def rfc3339_to_us(text: str) -> int:
    """RFC 3339 (Kraken v2 ``timestamp``, e.g. ``2023-09-25T07:49:37.708706Z``) to microseconds UTC."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"time {text!r} is not RFC 3339 (expected e.g. 2023-09-25T07:49:37.708706Z)")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        days = date(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError as exc:
        raise ValueError(f"time {text!r} has an impossible date: {exc}") from exc
    h, m, s = int(hour), int(minute), int(second)
    if h > 23 or m > 59 or s > 59:
        raise ValueError(f"time {text!r} has an impossible time of day")
    us = days * _US_PER_DAY + ((h * 60 + m) * 60 + s) * 1_000_000 + _fraction_us(fraction, text)
    if not zulu:
        oh, om = int(off_h), int(off_m)
        if oh > 23 or om > 59:
            raise ValueError(f"time {text!r} has an impossible UTC offset")
        offset = (oh * 60 + om) * 60_000_000
        us = us - offset if sign == "+" else us + offset
    return us


def seconds_str_to_us(text: str) -> int:
    """Decimal seconds since the epoch as a string (Kraken v1, ``"1617666461.465618"``) to microseconds."""
    match = _SECONDS.fullmatch(text)
    if match is None:
        raise ValueError(f"time {text!r} is not decimal seconds since the epoch (expected e.g. 1617666461.465618)")
    whole, fraction = match.groups()
    return int(whole) * 1_000_000 + _fraction_us(fraction, text)


def decimal_seconds_to_us(seconds: Decimal) -> int:
    """Seconds since the epoch as a JSON number, read exactly as a ``Decimal``, to the nearest microsecond.

    For Kraken REST's trade ``time`` (``1688669597.8277369``): Kraken prints a double with
    17 significant digits, so the 7th decimal is binary noise around the µs time. Doubles
    near today's epoch are 2.4e-7 s apart, under half a µs, so rounding (half-even, in
    integers) recovers that µs exactly. Digits are read, never multiplied out, so a huge
    exponent cannot blow up.
    """
    if not seconds.is_finite() or seconds.is_signed():
        raise ValueError(f"time {seconds} is not a non-negative number of seconds since the epoch")
    if not seconds:
        return 0
    if seconds.adjusted() > 11:
        raise ValueError(f"time {seconds} s is too large to be seconds since the epoch")
    _, digits, exponent = seconds.as_tuple()
    value = int("".join(map(str, digits)))
    shift = exponent + 6  # the power of ten of the last digit, in µs
    if shift >= 0:
        return value * 10**shift
    if -shift > len(digits):  # under 0.1 µs in all
        return 0
    divisor = 10**-shift
    whole, rest = divmod(value, divisor)
    return whole + int(2 * rest > divisor or (2 * rest == divisor and whole % 2 == 1))
