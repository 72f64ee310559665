"""What the exchanges list, from their own metadata: the parsers (real response formats), the
cache, the fallback to the bundled lists, and the feed's check of its --symbols."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import orjson
import pytest

from streamapp.clients import listings
from streamapp.errors import StreamappError
from streamapp.normalize.symbols import (
    DEFAULT_BINANCE_SYMBOLS, parse_binance_exchange_info, parse_kraken_asset_pairs,
)
from streamapp.settings import Settings

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SPOT_INFO = (FIXTURES / "binance_exchange_info.json").read_bytes()
USDM_INFO = (FIXTURES / "binance_usdm_exchange_info.json").read_bytes()
ASSET_PAIRS = (FIXTURES / "kraken_asset_pairs.json").read_bytes()
NOW = 1_733_097_600.0


def test_binance_exchange_info_maps_every_listed_symbol_to_base_slash_quote():
    listing = parse_binance_exchange_info(SPOT_INFO)
    assert listing.symbols.exchange == "binance"
    assert dict(listing.symbols.table) == {
        "ETHBTC": "ETH/BTC", "BTCUSDT": "BTC/USDT", "BCCBTC": "BCC/BTC", "1000SATSUSDT": "1000SATS/USDT",
        "PENGUUSDT": "PENGU/USDT",
    }
    assert listing.status["BCCBTC"] == "BREAK" and listing.status["PENGUUSDT"] == "TRADING"
    assert listing.skipped == ()


def test_binance_usdm_exchange_info_keeps_delivery_contracts_apart_from_perpetuals():
    listing = parse_binance_exchange_info(USDM_INFO, exchange="binanceusdm")
    assert listing.symbols.exchange == "binanceusdm"
    assert dict(listing.symbols.table) == {
        "BTCUSDT": "BTC/USDT", "1000PEPEUSDT": "1000PEPE/USDT", "BTCUSDT_250328": "BTC/USDT-250328",
        "MATICUSDT": "MATIC/USDT",
    }
    assert listing.status["MATICUSDT"] == "SETTLING"


def test_kraken_asset_pairs_map_ws_and_v2_names_to_canonical_btc_and_doge():
    listing = parse_kraken_asset_pairs(ASSET_PAIRS)
    assert listing.symbols.exchange == "kraken"
    assert dict(listing.symbols.table) == {
        "XBT/USD": "BTC/USD", "BTC/USD": "BTC/USD", "ETH/XBT": "ETH/BTC", "ETH/BTC": "ETH/BTC",
        "XDG/USD": "DOGE/USD", "DOGE/USD": "DOGE/USD", "PENGU/USD": "PENGU/USD", "ETH2.S/ETH": "ETH2.S/ETH",
    }
    assert listing.status["ETH2.S/ETH"] == "cancel_only"
    assert listing.skipped == ("XXBTZUSD.d: no wsname (not traded over WebSocket)",)


@pytest.mark.parametrize(("parse", "body", "message"), [
    (parse_binance_exchange_info, b"<html>502 Bad Gateway</html>", "binance exchangeInfo is not JSON"),
    (parse_binance_exchange_info, b'{"code":-1121,"msg":"Invalid symbol."}', "has no 'symbols' list"),
    (parse_binance_exchange_info, b"[]", "is a JSON list, expected an object"),
    (parse_kraken_asset_pairs, b'{"error":["EGeneral:Temporary lockout"]}', "answered an error"),
    (parse_kraken_asset_pairs, b'{"error":[]}', "has no 'result' object"),
])
def test_a_metadata_answer_of_the_wrong_shape_is_a_clear_error(parse, body, message):
    with pytest.raises(ValueError, match=message):
        parse(body)


def test_a_malformed_entry_is_left_out_not_the_whole_listing():
    body = orjson.dumps({"symbols": [{"symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC",
                                      "quoteAsset": "USDT"}, {"symbol": "X", "status": "TRADING"}]})
    listing = parse_binance_exchange_info(body)
    assert dict(listing.symbols.table) == {"BTCUSDT": "BTC/USDT"}
    assert len(listing.skipped) == 1


# --- fetch, cache, fallback -------------------------------------------------------------------


def settings_in(tmp_path: Path, **overrides) -> Settings:
    return Settings(home=tmp_path, binance_rest_url="http://exchange.invalid", binance_symbols="",
                    kraken_symbols="", **overrides)


def answering(body: bytes, urls: list[str] | None = None):
    async def fetch(url: str, timeout_s: float) -> bytes:
        if urls is not None:
            urls.append(url)
        return body
    return fetch


async def unreachable(url: str, timeout_s: float) -> bytes:
    raise OSError("Name or service not known")


def load(settings, exchange="binance", fetch=unreachable, now=NOW, **kw):
    return asyncio.run(listings.load(settings, exchange, fetch=fetch, now=lambda: now, **kw))


def test_the_listing_comes_from_the_exchange_endpoint_and_is_cached_with_its_time(tmp_path):
    settings = settings_in(tmp_path)
    urls: list[str] = []
    loaded = load(settings, fetch=answering(SPOT_INFO, urls))
    assert urls == ["http://exchange.invalid/api/v3/exchangeInfo?showPermissionSets=false"]
    assert loaded.origin == listings.EXCHANGE and "PENGUUSDT" in loaded.symbols
    cached = orjson.loads(listings.cache_path(settings, "binance", urls[0]).read_bytes())
    assert cached["fetched_at"] == NOW and cached["body"].encode() == SPOT_INFO


@pytest.mark.parametrize(("exchange", "path", "body"), [
    ("binanceusdm", "/fapi/v1/exchangeInfo", USDM_INFO),
    ("kraken", "/0/public/AssetPairs", ASSET_PAIRS),
])
def test_each_exchange_id_has_its_metadata_endpoint(tmp_path, exchange, path, body):
    urls: list[str] = []
    loaded = load(settings_in(tmp_path), exchange, fetch=answering(body, urls), rest_url="http://sim:9200/")
    assert urls == [f"http://sim:9200{path}"]
    assert loaded.symbols.exchange == exchange and loaded.origin == listings.EXCHANGE


def test_an_unreachable_exchange_falls_back_to_a_fresh_cache_and_says_so(tmp_path, caplog):
    settings = settings_in(tmp_path)
    load(settings, fetch=answering(SPOT_INFO), now=NOW)
    with caplog.at_level(logging.WARNING):
        loaded = load(settings, now=NOW + 7200)
    assert loaded.origin == listings.CACHE and loaded.age_s == 7200
    assert "PENGUUSDT" in loaded.symbols
    assert "unreachable" in caplog.text and "cached 2.0 h ago" in caplog.text


def test_without_a_fresh_cache_the_bundled_list_is_used_and_the_log_says_so(tmp_path, caplog):
    settings = settings_in(tmp_path, symbols_cache_max_age_s=3600)
    load(settings, fetch=answering(SPOT_INFO), now=NOW)
    with caplog.at_level(logging.WARNING):
        loaded = load(settings, now=NOW + 3601)
    assert loaded.origin == listings.BUNDLED
    assert set(loaded.symbols.table) == set(DEFAULT_BINANCE_SYMBOLS)
    assert "PENGUUSDT" not in loaded.symbols
    assert "BUNDLED symbol list" in caplog.text and "more than symbols_cache_max_age_s" in caplog.text


def test_an_answer_that_is_not_metadata_counts_as_unreachable(tmp_path):
    loaded = load(settings_in(tmp_path), fetch=answering(b"<html>captive portal</html>"))
    assert loaded.origin == listings.BUNDLED


def test_the_extras_setting_adds_symbols_to_any_listing(tmp_path):
    settings = settings_in(tmp_path).model_copy(update={"binance_symbols": "NEWUSDT, BTCUSDT"})
    fetched = load(settings, fetch=answering(SPOT_INFO))
    assert fetched.symbols.canonical("NEWUSDT") == "NEW/USDT" and fetched.symbols.canonical("BTCUSDT") == "BTC/USDT"
    assert load(settings).symbols.canonical("NEWUSDT") == "NEW/USDT"  # bundled


def test_the_feed_refuses_a_symbol_the_exchange_does_not_list_naming_it(tmp_path):
    loaded = load(settings_in(tmp_path), fetch=answering(SPOT_INFO))
    listings.require_listed(loaded, ["BTCUSDT", "PENGUUSDT"])
    with pytest.raises(StreamappError, match=r"binance does not list NOPEUSDT, BTC/USDT \(checked against the "
                                             r"exchange's list from http://exchange.invalid/api/v3/exchangeInfo"):
        listings.require_listed(loaded, ["BTCUSDT", "NOPEUSDT", "BTC/USDT"])


def test_a_kraken_feed_may_subscribe_by_v2_name(tmp_path):
    loaded = load(settings_in(tmp_path), "kraken", fetch=answering(ASSET_PAIRS))
    listings.require_listed(loaded, ["BTC/USD", "DOGE/USD", "PENGU/USD"])


# --- the normalizer's refresh ------------------------------------------------------------------

def test_after_an_unknown_symbol_the_normalizer_fetches_the_listing_again_and_accepts_it(tmp_path):
    """A pair listed after the worker started: its first frames are rejected, a refresh follows
    (not per message: at most once per min_interval_s), and later frames are accepted."""
    from streamapp.codecs.avro import TradeAvroCodec
    from streamapp.dispatch import Dispatcher
    from streamapp.normalize import binance
    from streamapp.normalize.symbols import SymbolMap

    frame = (FIXTURES / "binance_usdm_trades.jsonl").read_bytes().splitlines()[0].replace(b"BTCUSDT", b"PENGUUSDT")
    headers = [("streamapp.receive_time_us", b"1723161300012345")]
    dispatcher = Dispatcher("binance", binance.normalize, SymbolMap.binance(), TradeAvroCodec(7),
                            backfill=binance.normalize_backfill, max_skew_s=5)
    fetched: list[str] = []

    async def go():
        refresher = asyncio.ensure_future(listings.keep_fresh(
            settings_in(tmp_path), dispatcher, min_interval_s=0.05, tick_s=0.01, fetch=answering(SPOT_INFO, fetched)))
        try:
            await asyncio.sleep(0.2)
            assert fetched == []  # nothing unknown yet, and the hourly refresh is not due
            [rejected] = dispatcher.dispatch(frame, b"PENGUUSDT", headers, 0, 1)
            assert rejected.topic == "market.crypto.trades.dlq"
            for _ in range(100):
                if "PENGUUSDT" in dispatcher.symbols:
                    break
                await asyncio.sleep(0.01)
            [accepted] = dispatcher.dispatch(frame, b"PENGUUSDT", headers, 0, 2)
            assert accepted.key == b"PENGU/USDT"
            assert len(fetched) == 1
        finally:
            refresher.cancel()

    asyncio.run(go())
