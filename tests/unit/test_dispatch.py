"""The normalizer's per-record decision: normalized records, nothing, or one DLQ record."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from records import Trade
from streamapp import topics
from streamapp.codecs.avro import TradeAvroCodec
from streamapp.dispatch import (
    ERROR_CODE, ERROR_MESSAGE, SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC, Dispatcher,
)
from streamapp.feeds import headers as raw_headers
from streamapp.normalize import binance, kraken
from streamapp.normalize.symbols import SymbolMap

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FRAME = (FIXTURES / "binance_usdm_trades.jsonl").read_bytes().splitlines()[0]
RECEIVED_US = 1723161300012345
HEADERS = [(raw_headers.RECEIVE_TIME_US, str(RECEIVED_US).encode()), (raw_headers.CONNECTION_ID, b"c1")]


@pytest.fixture
def dispatcher() -> Dispatcher:
    # The 2024 capture is "in the past" for any clock, so the default skew check passes.
    return Dispatcher("binance", binance.normalize, SymbolMap.binance(), TradeAvroCodec(7), max_skew_s=5)


def test_a_trade_frame_becomes_one_avro_record_keyed_by_canonical_symbol(dispatcher):
    [out] = dispatcher.dispatch(FRAME, b"BTCUSDT", HEADERS, 2, 41)
    assert out.topic == topics.normalized("binance")
    assert out.key == b"BTC/USDT"
    assert out.value[:5] == b"\x00\x00\x00\x00\x07"  # magic byte, schema id 7
    assert TradeAvroCodec(7).decode(out.value) == Trade(
        exchange="binance", symbol="BTC/USDT", exchange_symbol="BTCUSDT", trade_id="5266585686",
        trade_seq=5266585686, price=Decimal("61807.70"), quantity=Decimal("0.002"), side="sell",
        trade_time=1723161300010000, event_time=1723161300010000, receive_time=RECEIVED_US,
        raw_partition=2, raw_offset=41,
    )


@pytest.mark.parametrize(("frame", "headers", "code"), [
    (b"{not json", HEADERS, "malformed_json"),
    (FRAME.replace(b'"p":"61807.70"', b'"p":"-1"'), HEADERS, "bad_price"),
    (FRAME.replace(b"BTCUSDT", b"NOPEUSDT"), HEADERS, "unknown_symbol"),
    (FRAME, [(raw_headers.CONNECTION_ID, b"c1")], "missing_field"),
    (FRAME, [(raw_headers.RECEIVE_TIME_US, b"soon")], "missing_field"),
])
def test_a_bad_record_goes_to_the_dlq_unchanged_with_why_and_where_from(dispatcher, frame, headers, code):
    [out] = dispatcher.dispatch(frame, b"BTCUSDT", headers, 1, 99)
    assert (out.topic, out.key, out.value) == (topics.DLQ, b"BTCUSDT", frame)
    got = dict(out.headers)
    assert got[ERROR_CODE] == code.encode()
    assert got[ERROR_MESSAGE]
    assert got[SOURCE_TOPIC] == topics.raw("binance").encode()
    assert (got[SOURCE_PARTITION], got[SOURCE_OFFSET]) == (b"1", b"99")
    for name, value in headers:  # the raw record's own headers ride along
        assert (name, value) in out.headers


def test_a_control_frame_publishes_nothing(dispatcher):
    assert dispatcher.dispatch(b'{"result":null,"id":1}', None, HEADERS, 0, 0) == []


def test_a_kraken_frame_with_several_trades_yields_one_record_each():
    frame = next(line for line in (FIXTURES / "kraken_v2_docs.jsonl").read_bytes().splitlines()
                 if b'"channel":"trade"' in line and line.count(b"trade_id") > 1)
    dispatcher = Dispatcher("kraken", kraken.normalize, SymbolMap.kraken(), TradeAvroCodec(3), max_skew_s=5)
    outs = dispatcher.dispatch(frame, b"BTC/USD", HEADERS, 0, 5)
    assert len(outs) == frame.count(b"trade_id") and all(o.topic == topics.normalized("kraken") for o in outs)


def test_a_symbol_map_of_another_exchange_is_refused():
    with pytest.raises(ValueError, match="symbol map is for 'kraken', not 'binance'"):
        Dispatcher("binance", binance.normalize, SymbolMap.kraken(), TradeAvroCodec(1), max_skew_s=5)
