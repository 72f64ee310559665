"""The normalizer's per-record decision: normalized records, nothing, or one DLQ record."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from records import Trade
from streamapp import headers as raw_headers
from streamapp import topics
from streamapp.codecs.avro import TradeAvroCodec
from streamapp.dispatch import (
    ERROR_CODE, ERROR_MESSAGE, SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC, Dispatcher,
)
from streamapp.normalize import binance, kraken
from streamapp.normalize.symbols import SymbolMap

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FRAME = (FIXTURES / "binance_usdm_trades.jsonl").read_bytes().splitlines()[0]
RECEIVED_US = 1723161300012345
HEADERS = [(raw_headers.RECEIVE_TIME_US, str(RECEIVED_US).encode()), (raw_headers.CONNECTION_ID, b"c1")]


@pytest.fixture
def dispatcher() -> Dispatcher:
    # The 2024 capture is "in the past" for any clock, so the default skew check passes.
    return Dispatcher("binance", binance.normalize, SymbolMap.binance(), TradeAvroCodec(7),
                      backfill=binance.normalize_backfill, max_skew_s=5)


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
    (FRAME, [(raw_headers.CONNECTION_ID, b"c1")], "missing_field"),  # no header, and no record timestamp
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


# --- raw records from other producers (kcat, Kafka Connect, ...): no streamapp headers ---------

RECORD_TIMESTAMP_MS = 1723161300500


def no_header_count() -> float:
    return REGISTRY.get_sample_value("streamapp_normalizer_no_receive_header_total", {"exchange": "binance"}) or 0.0


@pytest.mark.parametrize("headers", [None, [], [(b"some-tool", b"x")]])
def test_a_frame_without_receive_header_takes_its_kafka_timestamp_as_receive_time_and_is_counted(
        dispatcher, headers):
    before = no_header_count()
    [out] = dispatcher.dispatch(FRAME, b"BTCUSDT", headers, 2, 41, timestamp_ms=RECORD_TIMESTAMP_MS)
    assert out.topic == topics.normalized("binance")
    trade = TradeAvroCodec(7).decode(out.value)
    assert trade.receive_time == RECORD_TIMESTAMP_MS * 1000
    assert (trade.trade_id, trade.raw_partition, trade.raw_offset) == ("5266585686", 2, 41)
    assert no_header_count() == before + 1


def test_the_receive_header_wins_over_the_kafka_timestamp(dispatcher):
    before = no_header_count()
    [out] = dispatcher.dispatch(FRAME, b"BTCUSDT", HEADERS, 2, 41, timestamp_ms=RECORD_TIMESTAMP_MS)
    assert TradeAvroCodec(7).decode(out.value).receive_time == RECEIVED_US
    assert no_header_count() == before


@pytest.mark.parametrize(("headers", "timestamp_ms"), [
    ([], None),  # no timestamp either
    ([], -1),  # librdkafka's "no timestamp"
    ([(raw_headers.RECEIVE_TIME_US, b"soon")], RECORD_TIMESTAMP_MS),  # our header, broken: a real defect
])
def test_without_a_usable_receive_time_the_record_still_goes_to_the_dlq(dispatcher, headers, timestamp_ms):
    [out] = dispatcher.dispatch(FRAME, b"BTCUSDT", headers, 1, 99, timestamp_ms=timestamp_ms)
    assert (out.topic, dict(out.headers)[ERROR_CODE]) == (topics.DLQ, b"missing_field")


def test_a_control_frame_publishes_nothing(dispatcher):
    assert dispatcher.dispatch(b'{"result":null,"id":1}', None, HEADERS, 0, 0) == []


def test_a_kraken_frame_with_several_trades_yields_one_record_each():
    frame = next(line for line in (FIXTURES / "kraken_v2_docs.jsonl").read_bytes().splitlines()
                 if b'"channel":"trade"' in line and line.count(b"trade_id") > 1)
    dispatcher = Dispatcher("kraken", kraken.normalize, SymbolMap.kraken(), TradeAvroCodec(3),
                            backfill=kraken.normalize_backfill, max_skew_s=5)
    outs = dispatcher.dispatch(frame, b"BTC/USD", HEADERS, 0, 5)
    assert len(outs) == frame.count(b"trade_id") and all(o.topic == topics.normalized("kraken") for o in outs)


def test_a_symbol_map_of_another_exchange_is_refused():
    with pytest.raises(ValueError, match="symbol map is for 'kraken', not 'binance'"):
        Dispatcher("binance", binance.normalize, SymbolMap.kraken(), TradeAvroCodec(1),
                   backfill=binance.normalize_backfill, max_skew_s=5)


# --- routing by the streamapp.source header ---------------------------------------

# historicalTrades for the capture's first trade (5266585686) and its neighbours.
REST_BODY = (
    b'[{"id":5266585685,"price":"61807.60","qty":"0.010","quoteQty":"618.076","time":1723161300009,'
    b'"isBuyerMaker":false,"isBestMatch":true},'
    b'{"id":5266585686,"price":"61807.70","qty":"0.002","quoteQty":"123.6154","time":1723161300010,'
    b'"isBuyerMaker":true,"isBestMatch":true},'
    b'{"id":5266585687,"price":"61807.80","qty":"0.001","quoteQty":"61.8078","time":1723161300016,'
    b'"isBuyerMaker":false,"isBestMatch":true}]'
)


def backfill_headers(span: bytes | None = b"5266585686-5266585686") -> list[tuple[str, bytes]]:
    hdrs = HEADERS + [(raw_headers.SOURCE, raw_headers.SOURCE_BACKFILL)]
    if span is not None:
        hdrs.append((raw_headers.BACKFILL_RANGE, span))
    return hdrs + [(raw_headers.BACKFILL_URL, b"https://api.binance.com/api/v3/historicalTrades?symbol=BTCUSDT")]


@pytest.mark.parametrize("source", [None, raw_headers.SOURCE_WS])
def test_a_live_frame_goes_to_the_live_normalizer(dispatcher, source):
    hdrs = HEADERS + ([(raw_headers.SOURCE, source)] if source else [])
    [out] = dispatcher.dispatch(FRAME, b"BTCUSDT", hdrs, 2, 41)
    assert TradeAvroCodec(7).decode(out.value).trade_id == "5266585686"


def test_a_backfill_body_goes_to_the_backfill_normalizer_keeping_its_range(dispatcher):
    [out] = dispatcher.dispatch(REST_BODY, b"BTCUSDT", backfill_headers(), 2, 50)
    [live] = dispatcher.dispatch(FRAME, b"BTCUSDT", HEADERS, 2, 41)
    assert (out.topic, out.key) == (live.topic, live.key)
    got, want = TradeAvroCodec(7).decode(out.value), TradeAvroCodec(7).decode(live.value)
    # Same trade, same identity (Silver deduplicates it): only lineage differs (the live E equals T here).
    assert got == dataclasses.replace(want, raw_offset=50)
    assert (got.exchange, got.symbol, got.trade_id, got.trade_seq) == ("binance", "BTC/USDT", "5266585686", 5266585686)


def test_a_backfill_range_spanning_the_page_yields_every_trade_in_order(dispatcher):
    outs = dispatcher.dispatch(REST_BODY, b"BTCUSDT", backfill_headers(b"5266585685-5266585690"), 0, 1)
    assert [TradeAvroCodec(7).decode(o.value).trade_seq for o in outs] == [5266585685, 5266585686, 5266585687]


def test_a_backfill_body_read_as_a_live_frame_would_be_rejected(dispatcher):
    """Why routing matters: without the header, a REST body is not a frame."""
    [out] = dispatcher.dispatch(REST_BODY, b"BTCUSDT", HEADERS, 0, 1)
    assert dict(out.headers)[ERROR_CODE] == b"unsupported_message"


@pytest.mark.parametrize(("value", "key", "headers", "code"), [
    (REST_BODY, b"BTCUSDT", backfill_headers(span=None), "missing_field"),
    (REST_BODY, b"BTCUSDT", backfill_headers(b""), "bad_value"),
    (REST_BODY, b"BTCUSDT", backfill_headers(b"5266585686"), "bad_value"),
    (REST_BODY, b"BTCUSDT", backfill_headers(b"5266585690-5266585686"), "bad_value"),  # first > last
    (REST_BODY, b"BTCUSDT", backfill_headers(b"-1-5"), "bad_value"),
    (REST_BODY, b"BTCUSDT", backfill_headers(b"1 - 5"), "bad_value"),
    (REST_BODY, None, backfill_headers(), "missing_field"),  # the key is the symbol
    (REST_BODY, b"NOPEUSDT", backfill_headers(), "unknown_symbol"),
    (b"[{", b"BTCUSDT", backfill_headers(), "malformed_json"),
    (REST_BODY, b"BTCUSDT", HEADERS + [(raw_headers.SOURCE, b"carrier-pigeon")], "bad_value"),
    (REST_BODY, b"BTCUSDT", [h for h in backfill_headers() if h[0] != raw_headers.RECEIVE_TIME_US], "missing_field"),
])
def test_a_bad_backfill_record_goes_to_the_dlq_with_why(dispatcher, value, key, headers, code):
    [out] = dispatcher.dispatch(value, key, headers, 1, 99)
    assert (out.topic, out.key, out.value) == (topics.DLQ, key, value)
    got = dict(out.headers)
    assert got[ERROR_CODE] == code.encode()
    assert got[ERROR_MESSAGE]
    for name, header in headers:  # the raw record's own headers ride along, range and URL included
        assert (name, header) in out.headers


def test_a_kraken_backfill_body_is_routed_to_kraken_backfill():
    dispatcher = Dispatcher("kraken", kraken.normalize, SymbolMap.kraken(), TradeAvroCodec(3),
                            backfill=kraken.normalize_backfill, max_skew_s=5)
    body = (b'{"error":[],"result":{"XXBTZUSD":[["30243.40000","0.34507674",1688669597.8277369,"b","m","",61044952],'
            b'["30243.30000","0.00376960",1688669598.2804112,"s","l","",61044953]],"last":"1688671969993150842"}}')
    hdrs = HEADERS + [(raw_headers.SOURCE, raw_headers.SOURCE_BACKFILL),
                      (raw_headers.BACKFILL_RANGE, b"61044953-61044953")]
    [out] = dispatcher.dispatch(body, b"BTC/USD", hdrs, 0, 3)
    trade = TradeAvroCodec(3).decode(out.value)
    assert (out.key, trade.trade_id, trade.trade_seq, trade.trade_time) == (b"BTC/USD", "61044953", 61044953,
                                                                           1688669598280411)
    [rejected] = dispatcher.dispatch(b'{"error":["EQuery:Unknown asset pair"]}', b"BTC/USD", hdrs, 0, 4)
    message = dict(rejected.headers)[ERROR_MESSAGE]
    assert message == b"kraken backfill body is an error response: EQuery:Unknown asset pair"
