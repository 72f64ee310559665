"""The normalized ``Trade`` record: the Python type and its Avro schema (``trade.avsc``).

The schema file is the contract (registered in the schema registry, read by
ClickHouse's ``AvroConfluent``); the dataclass mirrors it field for field, in
the same order (``tests/unit/records/test_trade_record.py`` checks that). Prices and
quantities are exact ``Decimal``; times are integer microseconds since the
Unix epoch, UTC.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro

SCHEMA_PATH = Path(__file__).with_name("trade.avsc")

BUY = "buy"
SELL = "sell"
SIDES: frozenset[str] = frozenset((BUY, SELL))


@dataclass(frozen=True, slots=True)
class Trade:
    """One executed trade, normalized. Field order and names follow ``trade.avsc``."""

    exchange: str
    symbol: str
    exchange_symbol: str
    trade_id: str
    trade_seq: int | None
    price: Decimal
    quantity: Decimal
    side: str
    trade_time: int
    event_time: int
    receive_time: int
    raw_partition: int
    raw_offset: int


@functools.cache
def schema_json() -> dict[str, Any]:
    """The schema as written in ``trade.avsc`` (what gets registered)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@functools.cache
def schema_str() -> str:
    """The schema as a compact JSON string, for registering with the schema registry."""
    return json.dumps(schema_json(), separators=(",", ":"))


@functools.cache
def parsed_schema() -> dict[str, Any]:
    """The schema parsed once by fastavro (the form its readers and writers want)."""
    return fastavro.parse_schema(schema_json())


def _decimal_params(field: str) -> tuple[int, int]:
    for f in schema_json()["fields"]:
        if f["name"] == field:
            return f["type"]["precision"], f["type"]["scale"]
    raise KeyError(field)


# Precision and scale of price and quantity, read from the schema so the two never disagree.
PRICE_PRECISION, PRICE_SCALE = _decimal_params("price")
QUANTITY_PRECISION, QUANTITY_SCALE = _decimal_params("quantity")


def to_unscaled(value: Decimal, precision: int, scale: int) -> int:
    """The exact integer ``value * 10**scale`` that Avro's decimal stores; ``ValueError`` if it does not fit.

    Never rounds: a value with non-zero digits beyond ``scale`` fractional places,
    or with more than ``precision - scale`` integer digits, or not finite, is an
    error. Trailing zeros beyond the scale are fine (``0.10000000000000000000``).
    The cheap ``adjusted()`` bounds come first so a hostile exponent such as
    ``1e-999999999`` cannot make the exact arithmetic explode.
    """
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite number")
    if not value:
        return 0
    magnitude = value.adjusted()  # position of the leading digit: 10**magnitude <= |value|
    if magnitude >= precision - scale:
        raise ValueError(f"{value} has more than {precision - scale} integer digits (decimal({precision},{scale}))")
    if magnitude < -scale:
        raise ValueError(f"{value} has more than {scale} fractional digits (decimal({precision},{scale}))")
    numerator, denominator = value.as_integer_ratio()
    unscaled, remainder = divmod(numerator * 10**scale, denominator)
    if remainder:
        raise ValueError(f"{value} has more than {scale} fractional digits (decimal({precision},{scale}))")
    return unscaled
