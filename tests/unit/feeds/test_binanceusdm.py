"""Binance USDⓈ-M futures are their own exchange, ``binanceusdm``: never Binance spot's ``binance``.

Spot and futures trade the same symbols with unrelated trade-id sequences; under one
exchange id a spot trade and a futures trade with the same id would be one trade in
Silver, and one candle would mix two markets. Real frames from tests/fixtures and streamapp/captures/.
"""

from __future__ import annotations

import gzip
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from records import Trade
from streamapp import groups, package_data, pipeline, tables, topics
from streamapp import headers as raw_headers
from streamapp.codecs.avro import TradeAvroCodec
from streamapp.dispatch import Dispatcher
from streamapp.exchanges import BINANCE, BINANCEUSDM, EXCHANGES, KRAKEN
from streamapp.feeds import binance as spot_feed
from streamapp.feeds import binanceusdm as futures_feed
from streamapp.feeds.gaps import Gap
from streamapp.feeds.handler import protocol_for
from streamapp.normalize import binance
from streamapp.normalize.symbols import DEFAULT_BINANCEUSDM_SYMBOLS, SymbolMap
from streamapp.settings import Settings
from streamapp.simulator.capture import load

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures"
CAPTURES = ROOT / "streamapp" / "captures"
SPOT_CAPTURE = CAPTURES / "binance_spot_btcusdt_trades_2024-08-08.jsonl.gz"
FUTURES_CAPTURE = CAPTURES / "binance_usdm_btcusdt_trades_2024-08-08.jsonl.gz"
FUTURES = (FIXTURES / "binance_usdm_trades.jsonl").read_bytes().splitlines()
SPOT = (FIXTURES / "binance_spot_trades.jsonl").read_bytes().splitlines()
NOW_US = 1727000000000000  # 2024-09-22, after every trade here
RECEIVED_US = NOW_US - 1
SPOT_MAP = SymbolMap.binance()
FUTURES_MAP = SymbolMap.binance(DEFAULT_BINANCEUSDM_SYMBOLS, exchange=BINANCEUSDM)

# GET /fapi/v1/historicalTrades as Binance documents it (USDⓈ-M "Old Trades Lookup"): no isBestMatch.
FAPI_DOCS = (b'[{"id":28457,"price":"4.00000100","qty":"12.00000000","quoteQty":"8000.00",'
             b'"time":1499865549590,"isBuyerMaker":true,"isRPITrade":true}]')


def normalize(frame: bytes, symbols: SymbolMap):
    return binance.normalize(frame, receive_time_us=RECEIVED_US, raw_partition=0, raw_offset=5, symbols=symbols,
                             now_us=NOW_US, max_skew_us=5_000_000)


def test_a_futures_frame_read_with_the_futures_map_is_a_binanceusdm_trade():
    (trade,) = normalize(FUTURES[0], FUTURES_MAP)
    assert trade == Trade(BINANCEUSDM, "BTC/USDT", "BTCUSDT", "5266585686", 5266585686, Decimal("61807.70"),
                          Decimal("0.002"), "sell", 1723161300010000, 1723161300010000, RECEIVED_US, 0, 5)


def test_a_spot_and_a_futures_trade_with_the_same_id_have_different_identities():
    """Silver's identity is (exchange, symbol, trade id): the same id on both markets is two trades."""
    spot_event = orjson.loads(SPOT[0])
    futures_event = orjson.loads(FUTURES[0])
    futures_event["data"]["t"] = spot_event["data"]["t"]  # the same trade id on the other market
    (spot,) = normalize(SPOT[0], SPOT_MAP)
    (futures,) = normalize(orjson.dumps(futures_event), FUTURES_MAP)
    assert (spot.symbol, spot.trade_id) == (futures.symbol, futures.trade_id) == ("BTC/USDT", "3735684134")
    assert (spot.exchange, futures.exchange) == (BINANCE, BINANCEUSDM)


def test_a_fapi_history_body_backfills_binanceusdm_trades():
    result = binance.normalize_backfill(
        FAPI_DOCS, exchange_symbol="BTCUSDT", first_id=28457, last_id=28457, receive_time_us=RECEIVED_US,
        raw_partition=2, raw_offset=9, symbols=FUTURES_MAP, now_us=NOW_US, max_skew_us=5_000_000)
    assert result == (Trade(BINANCEUSDM, "BTC/USDT", "BTCUSDT", "28457", 28457, Decimal("4.00000100"),
                            Decimal("12.00000000"), "sell", 1499865549590000, 1499865549590000, RECEIVED_US, 2, 9),)


def test_the_binance_parsers_refuse_a_map_of_another_exchange():
    with pytest.raises(ValueError, match="binanceusdm"):
        normalize(FUTURES[0], SymbolMap.kraken())
    with pytest.raises(ValueError, match="for binance or binanceusdm, not 'kraken'"):
        SymbolMap.binance(exchange=KRAKEN)


def test_the_futures_dispatcher_publishes_to_the_binanceusdm_normalized_topic():
    dispatcher = Dispatcher(BINANCEUSDM, binance.normalize, FUTURES_MAP, TradeAvroCodec(7),
                            backfill=binance.normalize_backfill, max_skew_s=5)
    (out,) = dispatcher.dispatch(FUTURES[0], b"BTCUSDT", [(raw_headers.RECEIVE_TIME_US, str(RECEIVED_US).encode())],
                                 0, 1)
    assert out.topic == topics.normalized(BINANCEUSDM) == "market.crypto.trades.binanceusdm.normalized"
    assert TradeAvroCodec(7).decode(out.value).exchange == BINANCEUSDM
    assert dispatcher.source_topic == "market.crypto.trades.binanceusdm.raw"


def test_the_futures_feed_speaks_spots_protocol_on_the_futures_hosts():
    assert protocol_for(BINANCEUSDM) is futures_feed and futures_feed.EXCHANGE == "binanceusdm"
    assert futures_feed.DEFAULT_URL == "wss://fstream.binance.com/stream"
    assert futures_feed.DEFAULT_REST_URL == "https://fapi.binance.com"
    assert futures_feed.classify(FUTURES[0]) == spot_feed.classify(FUTURES[0])
    assert futures_feed.subscribe_messages(["BTCUSDT"], 1) == spot_feed.subscribe_messages(["BTCUSDT"], 1)
    # trades by id from the futures history endpoint, 500 a page at most (spot: /api/v3, 1000)
    assert futures_feed.backfill_url("http://x/", Gap("BTCUSDT", 10, 2500), None) == \
        "http://x/fapi/v1/historicalTrades?symbol=BTCUSDT&fromId=10&limit=500"
    assert futures_feed.backfill_url("http://x", Gap("BTCUSDT", 10, 11), None) == \
        "http://x/fapi/v1/historicalTrades?symbol=BTCUSDT&fromId=10&limit=2"
    assert futures_feed.backfill_page(FAPI_DOCS)[0][0][0] == 28457


@pytest.fixture
def defaults(monkeypatch):
    """No STREAMAPP_* URL from the environment (a developer's, or the integration tests' in the same run)."""
    for exchange in EXCHANGES:
        for kind in ("WS", "REST"):
            monkeypatch.delenv(f"STREAMAPP_{exchange.upper()}_{kind}_URL", raising=False)


def test_futures_urls_and_symbols_are_settings_of_their_own(defaults, monkeypatch):
    assert Settings().feed_ws_url(BINANCEUSDM) == "wss://fstream.binance.com/stream"
    assert Settings().feed_rest_url(BINANCEUSDM) == "https://fapi.binance.com"
    monkeypatch.setenv("STREAMAPP_BINANCEUSDM_WS_URL", "ws://sim:9200/fstream/stream")
    monkeypatch.setenv("STREAMAPP_BINANCEUSDM_REST_URL", "http://sim:9200")
    monkeypatch.setenv("STREAMAPP_BINANCEUSDM_SYMBOLS", "PEPEUSDT")
    settings = Settings()
    assert settings.feed_ws_url(BINANCEUSDM) == "ws://sim:9200/fstream/stream"
    assert settings.feed_rest_url(BINANCEUSDM) == "http://sim:9200"
    assert settings.binanceusdm_symbols == "PEPEUSDT"
    assert settings.feed_ws_url(BINANCE) == "wss://stream.binance.com:9443/stream"  # spot's own


def test_every_exchange_has_its_topics_tables_group_feed_and_settings(defaults):
    assert EXCHANGES == ("binance", "binanceusdm", "kraken")
    settings = Settings()
    for exchange in EXCHANGES:
        assert topics.raw(exchange) in topics.RAW_TOPICS and topics.normalized(exchange) in topics.NORMALIZED_TOPICS
        assert tables.kafka(exchange) in tables.KAFKA_TABLES and tables.bronze(exchange) in tables.BRONZE_TABLES
        assert groups.clickhouse(exchange) in groups.CLICKHOUSE_GROUPS
        assert protocol_for(exchange).EXCHANGE == exchange
        assert settings.feed_ws_url(exchange) == protocol_for(exchange).DEFAULT_URL
        assert settings.feed_rest_url(exchange) == protocol_for(exchange).DEFAULT_REST_URL
    assert topics.raw(BINANCEUSDM) == "market.crypto.trades.binanceusdm.raw"
    assert (tables.kafka(BINANCEUSDM), tables.bronze(BINANCEUSDM), groups.clickhouse(BINANCEUSDM)) == (
        "kafka_trades_binanceusdm", "bronze_trades_binanceusdm", "clickhouse-binanceusdm")


def test_pipeline_up_starts_a_feed_per_exchange_on_its_own_simulator_path_and_metrics_port():
    settings = Settings()
    for live in (True, False):
        feeds = [s for s in pipeline.processes(live) if s.name.startswith("feed-")]
        assert [s.name for s in feeds] == [f"feed-{e}" for e in EXCHANGES]
        assert len({s.host_port(settings) for s in feeds}) == len(EXCHANGES)
    futures = next(s for s in pipeline.processes(False) if s.name == "feed-binanceusdm")
    command = futures.command(settings)
    assert command[command.index("--url") + 1] == f"ws://127.0.0.1:{settings.simulator_port}/fstream/stream"
    assert command[command.index("--exchange") + 1] == BINANCEUSDM
    assert futures.host_port(settings)[1] == settings.binanceusdm_feed_metrics_port == 9104
    simulator = pipeline.SIMULATOR.command(settings)
    served = {Path(simulator[i + 1]) for i, arg in enumerate(simulator) if arg == "--capture"}
    assert served == {package_data.path("captures", name) for name, _symbols in pipeline.SIMULATED.values()}


def test_the_bundled_futures_capture_is_binanceusdm_and_spot_is_binance():
    for capture, exchange in ((SPOT_CAPTURE, BINANCE), (FUTURES_CAPTURE, BINANCEUSDM)):
        with gzip.open(capture) as fh:
            assert {orjson.loads(line)["exchange"] for line in fh} == {exchange}, capture
        assert pipeline.SIMULATED[exchange][0] == capture.name


def test_the_simulator_loads_spot_and_futures_captures_together_as_two_exchanges():
    """Both carry the stream btcusdt@trade; as one exchange they could not be served at once."""
    timelines = load([SPOT_CAPTURE, FUTURES_CAPTURE])
    assert len(timelines[BINANCE].by_stream["btcusdt@trade"]) == 4335
    assert len(timelines[BINANCEUSDM].by_stream["btcusdt@trade"]) == 8714
    first_futures = orjson.loads(timelines[BINANCEUSDM].items[0].frame)["data"]
    assert first_futures["t"] == 5266585686 and "X" in first_futures and "M" not in first_futures
