"""Avro schemas and the record types built from them (no dependency on streamapp)."""

from records.trade import (
    BUY,
    PRICE_PRECISION,
    PRICE_SCALE,
    QUANTITY_PRECISION,
    QUANTITY_SCALE,
    SCHEMA_PATH,
    SELL,
    SIDES,
    Trade,
    parsed_schema,
    schema_json,
    schema_str,
    to_unscaled,
)

__all__ = [
    "BUY",
    "PRICE_PRECISION",
    "PRICE_SCALE",
    "QUANTITY_PRECISION",
    "QUANTITY_SCALE",
    "SCHEMA_PATH",
    "SELL",
    "SIDES",
    "Trade",
    "parsed_schema",
    "schema_json",
    "schema_str",
    "to_unscaled",
]
