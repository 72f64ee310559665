"""The Trade dataclass and trade.avsc agree: names, order, types and nullability."""

from __future__ import annotations

import dataclasses
import typing
from decimal import Decimal

import fastavro
import pytest

import records
from records import Trade, to_unscaled

_AVRO_TO_PY = {"string": str, "long": int, "int": int, "bytes": Decimal}


def _avsc_fields():
    return records.schema_json()["fields"]


def _python_type(avro_type):
    """The Python type our record holds for an Avro field type (unions with null → Optional)."""
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        assert len(branches) == 1, avro_type
        return typing.Optional[_python_type(branches[0])]
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "decimal":
            return Decimal
        return _AVRO_TO_PY[avro_type["type"]]
    return _AVRO_TO_PY[avro_type]


def test_field_names_and_order_match_the_schema():
    assert [f.name for f in dataclasses.fields(Trade)] == [f["name"] for f in _avsc_fields()]


def test_field_types_and_nullability_match_the_schema():
    hints = typing.get_type_hints(Trade)
    for field in _avsc_fields():
        assert hints[field["name"]] == _python_type(field["type"]), field["name"]
        nullable = isinstance(field["type"], list) and "null" in field["type"]
        assert (type(None) in typing.get_args(hints[field["name"]])) == nullable, field["name"]
        if nullable:
            assert field["type"][0] == "null" and field["default"] is None, "null first, default null (evolvable)"


def test_every_field_is_documented():
    assert all(f.get("doc") for f in _avsc_fields())


def test_schema_identity_and_clickhouse_friendly_types():
    schema = records.schema_json()
    assert (schema["namespace"], schema["name"]) == ("io.streamapp.market", "Trade")
    types = {f["name"]: f["type"] for f in _avsc_fields()}
    for name in ("price", "quantity"):  # ClickHouse AvroConfluent: bytes(decimal) -> Decimal(P, S)
        assert types[name] == {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 18}
    for name in ("trade_time", "event_time", "receive_time"):  # -> DateTime64(6)
        assert types[name] == {"type": "long", "logicalType": "timestamp-micros"}
    assert types["side"] == "string"  # -> String / LowCardinality(String)
    assert (records.PRICE_PRECISION, records.PRICE_SCALE) == (38, 18)
    assert (records.QUANTITY_PRECISION, records.QUANTITY_SCALE) == (38, 18)


def test_schema_parses_once_and_is_stable():
    assert records.parsed_schema() is records.parsed_schema()
    assert fastavro.parse_schema(records.schema_json())["name"] == "io.streamapp.market.Trade"
    assert records.schema_str().startswith('{"type":"record"')


def test_trade_is_frozen_with_slots():
    trade = Trade("binance", "BTC/USDT", "BTCUSDT", "1", 1, Decimal("1"), Decimal("1"), "buy", 1, 1, 1, 0, 0)
    assert not hasattr(trade, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        trade.price = Decimal("2")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "unscaled"),
    [
        ("61807.70", 61807_700000000000000000),
        ("1e-3", 1_000000000000000),
        ("0.000000000000000001", 1),
        ("0.10000000000000000000", 100000000000000000),  # trailing zeros beyond the scale are exact
        ("99999999999999999999.999999999999999999", 10**38 - 1),
        ("-2.5", -2_500000000000000000),
        ("0", 0),
        ("0E-50", 0),
    ],
)
def test_to_unscaled_exact(text, unscaled):
    assert to_unscaled(Decimal(text), 38, 18) == unscaled


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1e-19", "fractional digits"),
        ("1.0000000000000000001", "fractional digits"),
        ("1e20", "integer digits"),
        ("1e-999999999", "fractional digits"),
        ("1e999999999", "integer digits"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
    ],
)
def test_to_unscaled_rejects_what_does_not_fit(text, reason):
    with pytest.raises(ValueError, match=reason):
        to_unscaled(Decimal(text), 38, 18)
