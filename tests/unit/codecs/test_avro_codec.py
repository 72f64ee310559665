"""Confluent wire-format Avro codec for Trade: round trip, independent decoding, exact errors."""

from __future__ import annotations

import io
import struct
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import fastavro
import pytest

import records
from records import Trade
from streamapp.codecs import CodecError, TradeAvroCodec
from streamapp.errors import StreamappError

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

FUTURES = Trade(  # the first trade of the futures fixture
    "binance", "BTC/USDT", "BTCUSDT", "5266585686", 5266585686, Decimal("61807.70"), Decimal("0.002"), "sell",
    1723161300010000, 1723161300010000, 1723161300012345, 2, 987654321,
)  # fmt: skip
KRAKEN_V1 = Trade(
    "kraken", "BTC/USD", "XBT/USD", "1617666461465618-0", None, Decimal("58721.20000"), Decimal("0.00000050"),
    "buy", 1617666461465618, 1617666461465618, 1617666461999999, 0, 0,
)  # fmt: skip
EXTREMES = Trade(
    "kraken", "SHIB/USD", "SHIB/USD", "9223372036854775807", 2**63 - 1,
    Decimal("0.000000000000000001"), Decimal("99999999999999999999.999999999999999999"), "buy",
    1230768000000000, 4102444800000000, 0, 2**31 - 1, 2**63 - 1,  # event time 2100-01-01
)  # fmt: skip
EXPONENT = Trade(
    "binance", "ETH/BTC", "ETHBTC", "7", 7, Decimal("1e-3"), Decimal("1E+2"), "buy", 1, 2, 3, 0, 0,
)  # fmt: skip

TRADES = [FUTURES, KRAKEN_V1, EXTREMES, EXPONENT]


@pytest.fixture
def codec() -> TradeAvroCodec:
    return TradeAvroCodec(schema_id=42)


@pytest.mark.parametrize("trade", TRADES, ids=["futures", "kraken_v1", "extremes", "exponent"])
def test_round_trip(codec, trade):
    decoded = codec.decode(codec.encode(trade))
    assert decoded == trade
    assert decoded.price.as_tuple().exponent == -18  # quantized to the schema scale, same value


def test_wire_header_is_magic_byte_and_big_endian_schema_id():
    encoded = TradeAvroCodec(0x01020304).encode(FUTURES)
    assert encoded[:5] == b"\x00\x01\x02\x03\x04"


@pytest.mark.parametrize("trade", TRADES, ids=["futures", "kraken_v1", "extremes", "exponent"])
def test_body_decodes_with_fastavro_and_the_registered_schema(codec, trade):
    """Independent of our decoder: fastavro, the .avsc as registered, logical types on."""
    body = io.BytesIO(codec.encode(trade)[5:])
    record = fastavro.schemaless_reader(body, fastavro.parse_schema(records.schema_json()), None)
    assert body.read() == b""
    assert record["price"] == trade.price and record["quantity"] == trade.quantity
    for name in ("trade_time", "event_time", "receive_time"):
        assert record[name] == EPOCH + timedelta(microseconds=getattr(trade, name))
    for name in ("exchange", "symbol", "exchange_symbol", "trade_id", "trade_seq", "side", "raw_partition", "raw_offset"):
        assert record[name] == getattr(trade, name)


@pytest.mark.parametrize("trade", TRADES, ids=["futures", "kraken_v1", "extremes", "exponent"])
def test_body_equals_fastavros_own_encoding(codec, trade):
    """Our precomputed decimal bytes are exactly what fastavro writes for the Decimal itself."""
    reference = io.BytesIO()
    datum = {f: getattr(trade, f) for f in Trade.__dataclass_fields__}
    fastavro.schemaless_writer(reference, records.parsed_schema(), datum)
    assert codec.encode(trade)[5:] == reference.getvalue()


def test_encode_reuses_no_state_between_calls(codec):
    first = codec.encode(FUTURES)
    codec.encode(EXTREMES)
    assert codec.encode(FUTURES) == first


@pytest.mark.parametrize(
    ("schema_id", "message"),
    [
        (True, "not an int"),
        ("42", "not an int"),
        (42.0, "not an int"),
        (None, "not an int"),
        (-1, "outside"),
        (2**31, "outside"),
    ],
)
def test_constructor_rejects_bad_schema_ids(schema_id, message):
    with pytest.raises(CodecError, match=message):
        TradeAvroCodec(schema_id)


def _replace(**changes):
    return Trade(**{**{f: getattr(FUTURES, f) for f in Trade.__dataclass_fields__}, **changes})


@pytest.mark.parametrize(
    ("trade", "message"),
    [
        (_replace(price=Decimal("0.0000000000000000001")), "price cannot be encoded exactly.*fractional"),
        (_replace(quantity=Decimal("1.00000000000000000001")), "quantity cannot be encoded exactly.*fractional"),
        (_replace(price=Decimal("1e20")), "price cannot be encoded exactly.*integer digits"),
        (_replace(price=Decimal("NaN")), "finite"),
        (_replace(price=61807.7), "expected a decimal.Decimal"),
        (_replace(quantity="0.002"), "expected a decimal.Decimal"),
        (_replace(trade_time="2024-08-08"), "cannot encode trade"),
        (_replace(trade_seq="5266585686"), "cannot encode trade"),
        (_replace(raw_partition=None), "raw_partition is None"),
        (_replace(raw_partition=2**31), "raw_partition is 2147483648"),
        (_replace(raw_offset=-1), "raw_offset is -1"),
        ("not a trade", "expected records.Trade"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_encode_errors(codec, trade, message):
    with pytest.raises(CodecError, match=message) as info:
        codec.encode(trade)
    assert isinstance(info.value, StreamappError)


def test_encode_error_keeps_the_library_cause(codec):
    with pytest.raises(CodecError) as info:
        codec.encode(_replace(price=Decimal("1e-19")))
    assert isinstance(info.value.__cause__, ValueError)


def test_codec_still_works_after_an_error(codec):
    with pytest.raises(CodecError):
        codec.encode(_replace(trade_time="x"))
    assert codec.decode(codec.encode(FUTURES)) == FUTURES


_GOOD = TradeAvroCodec(42).encode(FUTURES)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter than the 5-byte"),
        (b"\x00\x00\x00", "shorter than the 5-byte"),
        (b"\x01" + _GOOD[1:], "magic byte is 1"),
        (b"\x00" + struct.pack(">I", 43) + _GOOD[5:], "schema id 43, this codec reads 42"),
        (_GOOD[:-3], "cannot decode"),
        (_GOOD[:5], "cannot decode"),
        (_GOOD + b"\x00", "1 trailing bytes"),
    ],
    ids=["empty", "short", "magic", "schema-id", "truncated", "no-body", "trailing"],
)
def test_decode_errors(codec, data, message):
    with pytest.raises(CodecError, match=message):
        codec.decode(data)
