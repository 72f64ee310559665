"""Field checks shared by the per-exchange normalizers; each raises ``Reject`` with an exact code.

Kept tiny and allocation-free on the happy path: they run once per field per trade.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from records import PRICE_PRECISION, PRICE_SCALE, QUANTITY_PRECISION, QUANTITY_SCALE, to_unscaled
from streamapp.normalize.result import (
    BAD_PRICE,
    BAD_QUANTITY,
    BAD_TIME,
    BAD_VALUE,
    WRONG_TYPE,
    Reject,
    show,
)
from streamapp.normalize.timeutil import MIN_TRADE_TIME_US

MAX_INT64 = 2**63 - 1  # Avro long

# A plain non-negative decimal literal, exponent allowed ("0.002", "61807.70", "1e-3").
# Decimal() alone would also take " 1", "1_000", "NaN" and "Infinity": not from an exchange.
_DECIMAL_LITERAL = re.compile(r"[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?")


def decimal_from_str(value: object, where: str, code: str) -> Decimal:
    """An exact ``Decimal`` from a JSON string such as Binance's ``"p": "61807.70"``."""
    if type(value) is not str:
        raise Reject(WRONG_TYPE, f"{where} is {show(value)} ({type(value).__name__}); expected a decimal string")
    if _DECIMAL_LITERAL.fullmatch(value) is None:
        raise Reject(code, f"{where} is {show(value)}; expected a positive decimal string such as '61807.70'")
    try:
        return Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only valid literals
        raise Reject(code, f"{where} is {show(value)}; not a decimal") from exc


def decimal_from_number(value: object, where: str) -> Decimal:
    """An exact ``Decimal`` from a JSON number parsed with ``parse_float=Decimal`` (ints allowed, bools not)."""
    kind = type(value)
    if kind is Decimal:
        return value  # type: ignore[return-value]
    if kind is int:
        return Decimal(value)  # type: ignore[arg-type]
    raise Reject(WRONG_TYPE, f"{where} is {show(value)} ({kind.__name__}); expected a JSON number")


def check_price(price: Decimal, where: str) -> Decimal:
    if not price > 0:
        raise Reject(BAD_PRICE, f"{where} is {price}; a price must be > 0")
    try:
        to_unscaled(price, PRICE_PRECISION, PRICE_SCALE)
    except ValueError as exc:
        raise Reject(BAD_PRICE, f"{where} does not fit the Trade schema exactly: {exc}") from exc
    return price


def check_quantity(quantity: Decimal, where: str) -> Decimal:
    if not quantity > 0:
        raise Reject(BAD_QUANTITY, f"{where} is {quantity}; a quantity must be > 0")
    try:
        to_unscaled(quantity, QUANTITY_PRECISION, QUANTITY_SCALE)
    except ValueError as exc:
        raise Reject(BAD_QUANTITY, f"{where} does not fit the Trade schema exactly: {exc}") from exc
    return quantity


def require_int(value: object, where: str) -> int:
    """A JSON integer (``true`` is not one, nor is ``1.0`` or ``"1"``)."""
    if type(value) is not int:
        raise Reject(WRONG_TYPE, f"{where} is {show(value)} ({type(value).__name__}); expected an integer")
    return value  # type: ignore[return-value]


def require_str(value: object, where: str) -> str:
    if type(value) is not str:
        raise Reject(WRONG_TYPE, f"{where} is {show(value)} ({type(value).__name__}); expected a string")
    return value  # type: ignore[return-value]


def check_sequence(value: int, where: str) -> int:
    if not 0 <= value <= MAX_INT64:
        raise Reject(BAD_VALUE, f"{where} is {show(value)}; a trade id must be in 0..2**63-1")
    return value


def check_time(us: int, where: str, now_us: int, max_skew_us: int) -> int:
    """Not before 2009-01-01 and not later than ``now_us + max_skew_us``."""
    if us < MIN_TRADE_TIME_US:
        raise Reject(BAD_TIME, f"{where} is {us} µs, before 2009-01-01T00:00:00Z")
    if us > now_us + max_skew_us:
        raise Reject(
            BAD_TIME,
            f"{where} is {us} µs, {us - now_us} µs ahead of now ({now_us}); more than the allowed clock skew "
            f"of {max_skew_us} µs (setting clock_skew_s): check the exchange's and this host's clocks",
        )
    return us
