"""REST backfill bodies → Trade / Rejection (``normalize_backfill`` of each exchange).

Bodies are the documented examples (Binance ``GET /api/v3/historicalTrades``,
Kraken ``GET /0/public/Trades``), variations in the same format, and rows built
from the captured live frames in ``tests/fixtures`` the way the exchange (and
our simulator, ``streamapp/simulator/server.py``) answers for those trades.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from records import Trade
from streamapp.normalize import binance, kraken
from streamapp.normalize.result import Rejection
from streamapp.normalize.symbols import DEFAULT_BINANCE_MAP, DEFAULT_KRAKEN_MAP

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
NOW_US = 1727000000000000  # 2024-09-22, after every trade here
SKEW_US = 5_000_000
RECEIVED_US = NOW_US - 1
ALL = (0, 2**63 - 1)


def run_binance(body: bytes, span=ALL, key: str | None = "BTCUSDT", now_us: int = NOW_US):
    return binance.normalize_backfill(
        body, exchange_symbol=key, first_id=span[0], last_id=span[1], receive_time_us=RECEIVED_US,
        raw_partition=1, raw_offset=7, symbols=DEFAULT_BINANCE_MAP, now_us=now_us, max_skew_us=SKEW_US,
    )  # fmt: skip


def run_kraken(body: bytes, span=ALL, key: str | None = "BTC/USD", now_us: int = NOW_US):
    return kraken.normalize_backfill(
        body, exchange_symbol=key, first_id=span[0], last_id=span[1], receive_time_us=RECEIVED_US,
        raw_partition=1, raw_offset=7, symbols=DEFAULT_KRAKEN_MAP, now_us=now_us, max_skew_us=SKEW_US,
    )  # fmt: skip


def trade(exchange, symbol, exchange_symbol, seq, price, qty, side, time_us) -> Trade:
    return Trade(
        exchange, symbol, exchange_symbol, str(seq), seq, Decimal(price), Decimal(qty), side, time_us, time_us,
        RECEIVED_US, 1, 7,
    )  # fmt: skip


# --- Binance -------------------------------------------------------------------

# The example in Binance's docs (spot REST, "Old trade lookup"), verbatim.
BINANCE_DOCS = (
    b'[{"id":28457,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012",'
    b'"time":1499865549590,"isBuyerMaker":true,"isBestMatch":true}]'
)


def brow(id="28457", price='"4.00000100"', qty='"12.00000000"', time="1499865549590", maker="true", drop=(), **extra):
    fields = dict(id=id, price=price, qty=qty, quoteQty='"48.000012"', time=time, isBuyerMaker=maker,
                  isBestMatch="true")  # fmt: skip
    fields.update(extra)
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields.items() if k not in drop) + "}"


def bpage(*rows: str) -> bytes:
    return ("[" + ",".join(rows) + "]").encode()


def test_binance_documented_page():
    assert run_binance(BINANCE_DOCS) == (
        trade("binance", "BTC/USDT", "BTCUSDT", 28457, "4.00000100", "12.00000000", "sell", 1499865549590000),
    )


@pytest.mark.parametrize(
    ("body", "span", "ids"),
    [
        (bpage(brow(id="10"), brow(id="11", maker="false"), brow(id="12")), (11, 11), [11]),
        (bpage(brow(id="10"), brow(id="11"), brow(id="12")), (10, 12), [10, 11, 12]),
        (bpage(brow(id="10"), brow(id="11"), brow(id="12")), (11, 500), [11, 12]),  # page shorter than the gap
        (bpage(brow(id="10"), brow(id="11")), (20, 30), []),  # nothing of the gap: a valid, empty result
        (b"[]", (20, 30), []),
        # out-of-range trades are skipped before their other fields are checked
        (bpage(brow(id="9", price='"-1"', maker="null"), brow(id="10")), (10, 10), [10]),
    ],
)
def test_binance_keeps_only_ids_in_the_backfill_range(body, span, ids):
    result = run_binance(body, span)
    assert isinstance(result, tuple)
    assert [t.trade_seq for t in result] == ids


def test_binance_side_and_exact_decimals():
    [buy] = run_binance(bpage(brow(price='"61807.70"', qty='"1e-3"', maker="false")))
    assert (buy.side, buy.price, buy.quantity) == ("buy", Decimal("61807.70"), Decimal("0.001"))
    assert str(buy.price) == "61807.70"  # trailing zeros kept: exact text, no float


@pytest.mark.parametrize(
    ("body", "key", "code"),
    [
        (b"[{", "BTCUSDT", "malformed_json"),
        (b'{"code":-1121,"msg":"Invalid symbol."}', "BTCUSDT", "unsupported_message"),
        (b'"trades"', "BTCUSDT", "unsupported_message"),
        (BINANCE_DOCS, None, "missing_field"),
        (BINANCE_DOCS, "", "missing_field"),
        (BINANCE_DOCS, "NOPEUSDT", "unknown_symbol"),
        (bpage("[28457]"), "BTCUSDT", "wrong_type"),
        (bpage(brow(drop=("id",))), "BTCUSDT", "missing_field"),
        (bpage(brow(drop=("price",))), "BTCUSDT", "missing_field"),
        (bpage(brow(drop=("qty",))), "BTCUSDT", "missing_field"),
        (bpage(brow(drop=("time",))), "BTCUSDT", "missing_field"),
        (bpage(brow(drop=("isBuyerMaker",))), "BTCUSDT", "missing_field"),
        (bpage(brow(id='"28457"')), "BTCUSDT", "wrong_type"),
        (bpage(brow(id="true")), "BTCUSDT", "wrong_type"),
        (bpage(brow(id="-1")), "BTCUSDT", "bad_value"),
        (bpage(brow(price="4.000001")), "BTCUSDT", "wrong_type"),
        (bpage(brow(price='"0"')), "BTCUSDT", "bad_price"),
        (bpage(brow(price='"NaN"')), "BTCUSDT", "bad_price"),
        (bpage(brow(price='"0.0000000000000000001"')), "BTCUSDT", "bad_price"),
        (bpage(brow(qty='"-2"')), "BTCUSDT", "bad_quantity"),
        (bpage(brow(time='"1499865549590"')), "BTCUSDT", "wrong_type"),
        (bpage(brow(time="1199865549590")), "BTCUSDT", "bad_time"),  # 2008
        (bpage(brow(time=str(NOW_US // 1000 + 60_000))), "BTCUSDT", "bad_time"),  # a minute ahead
        (bpage(brow(maker='"true"')), "BTCUSDT", "wrong_type"),
        # one bad trade in range rejects the whole body, as for live frames
        (bpage(brow(id="1"), brow(id="2", qty='"0"')), "BTCUSDT", "bad_quantity"),
    ],
)
def test_binance_rejections(body, key, code):
    result = run_binance(body, key=key)
    assert isinstance(result, Rejection), result
    assert result.code == code
    assert result.message.strip()


def test_binance_other_exchanges_map_is_a_programming_error():
    with pytest.raises(ValueError, match="pass a binance SymbolMap"):
        binance.normalize_backfill(
            BINANCE_DOCS, exchange_symbol="BTCUSDT", first_id=0, last_id=1, receive_time_us=0, raw_partition=0,
            raw_offset=0, symbols=DEFAULT_KRAKEN_MAP, now_us=NOW_US, max_skew_us=SKEW_US,
        )  # fmt: skip


def _live_to_rest_binance(event: dict) -> dict:
    """A live ``trade`` event as historicalTrades answers for the same trade (our simulator does this too)."""
    return {"id": event["t"], "price": event["p"], "qty": event["q"],
            "quoteQty": str(Decimal(event["p"]) * Decimal(event["q"])), "time": event["T"],
            "isBuyerMaker": event["m"], "isBestMatch": event.get("M", True)}  # fmt: skip


@pytest.mark.parametrize("capture", ["binance_usdm_trades.jsonl", "binance_spot_trades.jsonl"])
def test_binance_backfilled_trade_is_the_live_trade(capture):
    """Same identity (exchange, symbol, trade id) and fields; only event time and lineage may differ."""
    frames = (FIXTURES / capture).read_bytes().splitlines()[:50]
    live = [t for f in frames for t in binance.normalize(
        f, receive_time_us=RECEIVED_US, raw_partition=1, raw_offset=7, symbols=DEFAULT_BINANCE_MAP, now_us=NOW_US,
        max_skew_us=SKEW_US)]  # fmt: skip
    events = [json.loads(f)["data"] for f in frames]
    key = events[0]["s"]
    same_symbol = [t for t in live if t.exchange_symbol == key]
    body = json.dumps([_live_to_rest_binance(e) for e in events if e["s"] == key]).encode()
    backfilled = run_binance(body, key=key)
    assert backfilled == tuple(dataclasses.replace(t, event_time=t.trade_time) for t in same_symbol)
    assert len(backfilled) > 1


# --- Kraken --------------------------------------------------------------------

# The example in Kraken's docs (Spot REST, "Get Recent Trades"), verbatim but for whitespace.
KRAKEN_DOCS = (
    b'{"error":[],"result":{"XXBTZUSD":['
    b'["30243.40000","0.34507674",1688669597.8277369,"b","m","",61044952],'
    b'["30243.30000","0.00376960",1688669598.2804112,"s","l","",61044953],'
    b'["30243.30000","0.01235716",1688669602.698379,"s","m","",61044956]],'
    b'"last":"1688671969993150842"}}'
)


def krow(price='"30243.40000"', volume='"0.34507674"', time="1688669597.827304", side='"b"', trade_id="61044952",
         extra=()) -> str:  # fmt: skip
    return "[" + ",".join([price, volume, time, side, '"m"', '""', trade_id, *extra]) + "]"


def kpage(*rows: str, pair: str = "XXBTZUSD") -> bytes:
    return ('{"error":[],"result":{"' + pair + '":[' + ",".join(rows) + '],"last":"1688671969993150842"}}').encode()


def test_kraken_documented_page():
    # Times are doubles printed with 17 digits: the nearest µs is the trade's time.
    assert run_kraken(KRAKEN_DOCS) == (
        trade("kraken", "BTC/USD", "BTC/USD", 61044952, "30243.40000", "0.34507674", "buy", 1688669597827737),
        trade("kraken", "BTC/USD", "BTC/USD", 61044953, "30243.30000", "0.00376960", "sell", 1688669598280411),
        trade("kraken", "BTC/USD", "BTC/USD", 61044956, "30243.30000", "0.01235716", "sell", 1688669602698379),
    )


def test_kraken_page_with_exact_times():
    body = kpage(krow(), krow(price='"30243.3"', volume='"0.0037696"', time="1688669598.280411", side='"s"',
                              trade_id="61044953"))  # fmt: skip
    assert run_kraken(body) == (
        trade("kraken", "BTC/USD", "BTC/USD", 61044952, "30243.40000", "0.34507674", "buy", 1688669597827304),
        trade("kraken", "BTC/USD", "BTC/USD", 61044953, "30243.3", "0.0037696", "sell", 1688669598280411),
    )


@pytest.mark.parametrize(
    ("time", "us"),
    [
        ("1688669597.827304", 1688669597827304),
        ("1688669597.8273040000", 1688669597827304),  # trailing zeros are not sub-µs digits
        ("1688669597", 1688669597000000),
        ("1.688669597827304e9", 1688669597827304),
        ("1688669597.8277369", 1688669597827737),  # a printed double: to the nearest µs
        ("1688669597.8273045", 1688669597827304),  # exact half: to even
        ("1688669597.8273055", 1688669597827306),
        ("1688669597.82730450000000000000000000001", 1688669597827305),  # exact, never via float
        ('"1688669597.827304"', 1688669597827304),  # decimal string, as our simulator (and v1) sends
        ('"1688669597.8"', 1688669597800000),
    ],
)
def test_kraken_times_are_read_exactly(time, us):
    [t] = run_kraken(kpage(krow(time=time)))
    assert t.trade_time == t.event_time == us


@pytest.mark.parametrize(
    ("body", "span", "ids"),
    [
        (kpage(krow(trade_id="10"), krow(trade_id="11"), krow(trade_id="12")), (11, 11), [11]),
        (kpage(krow(trade_id="10"), krow(trade_id="11"), krow(trade_id="12")), (11, 99), [11, 12]),
        (kpage(krow(trade_id="10"), krow(trade_id="11")), (20, 30), []),
        (kpage(), (20, 30), []),
        # trades before the gap (Kraken pages by time) are skipped before their fields are checked
        (kpage(krow(trade_id="9", time="-1", side='"x"'), krow(trade_id="10")), (10, 10), [10]),
    ],
)
def test_kraken_keeps_only_ids_in_the_backfill_range(body, span, ids):
    result = run_kraken(body, span)
    assert isinstance(result, tuple)
    assert [t.trade_seq for t in result] == ids


def test_kraken_symbol_is_the_record_key_not_the_pair_name():
    [t] = run_kraken(kpage(krow(), pair="XDGUSD"), key="DOGE/USD")
    assert (t.symbol, t.exchange_symbol) == ("DOGE/USD", "DOGE/USD")


@pytest.mark.parametrize(
    ("body", "key", "code", "message"),
    [
        (b'{"error":[],', "BTC/USD", "malformed_json", "not valid UTF-8 JSON"),
        (b'{"error":["EQuery:Unknown asset pair"]}', "BTC/USD", "unsupported_message", "EQuery:Unknown asset pair"),
        (b'{"error":["EGeneral:Too many requests","EAPI:Rate limit exceeded"],"result":{}}', "BTC/USD",
         "unsupported_message", "EGeneral:Too many requests; EAPI:Rate limit exceeded"),
        (b"[]", "BTC/USD", "unsupported_message", "expected the Trades object"),
        (KRAKEN_DOCS, None, "missing_field", "no key"),
        (KRAKEN_DOCS, "FOO/USD", "unknown_symbol", "'FOO/USD'"),
        (b'{"result":{"XXBTZUSD":[]}}', "BTC/USD", "missing_field", "'error'"),
        (b'{"error":"none","result":{}}', "BTC/USD", "wrong_type", "'error'"),
        (b'{"error":[]}', "BTC/USD", "missing_field", "'result'"),
        (b'{"error":[],"result":[]}', "BTC/USD", "wrong_type", "'result'"),
        (b'{"error":[],"result":{"last":"1"}}', "BTC/USD", "missing_field", "0 pair entries"),
        (b'{"error":[],"result":{"XXBTZUSD":[],"XETHZUSD":[],"last":"1"}}', "BTC/USD", "bad_value", "2 pair entries"),
        (b'{"error":[],"result":{"XXBTZUSD":{}}}', "BTC/USD", "wrong_type", "expected an array"),
        (kpage('{"price":"1"}'), "BTC/USD", "wrong_type", "trade[0]"),
        (kpage('["1","2",1688669597.1,"b","m",""]'), "BTC/USD", "missing_field", "6 elements"),
        (kpage(krow(trade_id='"61044952"')), "BTC/USD", "wrong_type", "trade id"),
        (kpage(krow(trade_id="-5")), "BTC/USD", "bad_value", "trade id"),
        (kpage(krow(price="30243.4")), "BTC/USD", "wrong_type", "price"),
        (kpage(krow(price='"0"')), "BTC/USD", "bad_price", "price"),
        (kpage(krow(volume='"-1"')), "BTC/USD", "bad_quantity", "volume"),
        (kpage(krow(time='"1688669597.8273041"')), "BTC/USD", "bad_time", "sub-microsecond"),
        (kpage(krow(time="1199865549.5")), "BTC/USD", "bad_time", "2009"),
        (kpage(krow(time=str(NOW_US // 1_000_000 + 60))), "BTC/USD", "bad_time", "clock skew"),
        (kpage(krow(time="1e999")), "BTC/USD", "bad_time", "too large"),
        (kpage(krow(time="-1")), "BTC/USD", "bad_time", "non-negative"),
        (kpage(krow(time="true")), "BTC/USD", "wrong_type", "time"),
        (kpage(krow(side='"buy"')), "BTC/USD", "bad_value", "side"),
        (kpage(krow(side="1")), "BTC/USD", "wrong_type", "side"),
    ],
)
def test_kraken_rejections(body, key, code, message):
    result = run_kraken(body, key=key)
    assert isinstance(result, Rejection), result
    assert result.code == code
    assert message in result.message


def test_kraken_other_exchanges_map_is_a_programming_error():
    with pytest.raises(ValueError, match="pass a kraken SymbolMap"):
        kraken.normalize_backfill(
            KRAKEN_DOCS, exchange_symbol="BTC/USD", first_id=0, last_id=1, receive_time_us=0, raw_partition=0,
            raw_offset=0, symbols=DEFAULT_BINANCE_MAP, now_us=NOW_US, max_skew_us=SKEW_US,
        )  # fmt: skip


def test_kraken_backfilled_trade_is_the_live_trade():
    """The documented v2 snapshot's trades, as Trades answers for them: same identity and fields, the
    µs time included (recovered from the printed double)."""
    frame = (FIXTURES / "kraken_v2_docs.jsonl").read_bytes().splitlines()[0]
    live = kraken.normalize(frame, receive_time_us=RECEIVED_US, raw_partition=1, raw_offset=7,
                            symbols=DEFAULT_KRAKEN_MAP, now_us=NOW_US, max_skew_us=SKEW_US)  # fmt: skip
    items = json.loads(frame, parse_float=Decimal)["data"]
    rows = []
    for item in items:
        stamp = datetime.fromisoformat(item["timestamp"].replace("Z", "+00:00"))
        seconds = format(stamp.timestamp(), ".17g")  # a double printed as Kraken prints it
        rows.append(krow(price=f'"{item["price"]}"', volume=f'"{item["qty"]}"', time=seconds,
                         side=f'"{item["side"][0]}"', trade_id=str(item["trade_id"])))  # fmt: skip
    backfilled = run_kraken(kpage(*rows, pair="MATICUSD"), key="MATIC/USD")
    assert backfilled == live
    assert len(backfilled) == 2
