"""End to end: simulator -> feed handler -> raw topic -> normalizer -> normalized topic -> warehouse.

The candles ClickHouse builds are checked against the outside world: a
reference computed here, independently, from the capture's own frames, and
Binance's official 1m klines for the same futures trades. Binance spot
(``binance``) and USDⓈ-M futures (``binanceusdm``) are replayed at the same
time, on the same symbol and minutes: two markets, two sets of candles.
"""

from __future__ import annotations

import csv
import gzip
import json
import time
from collections import defaultdict
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from streamapp import tables, topics
from streamapp.clients.clickhouse import connect
from streamapp.clients.kafka import ensure_topics
from tests.cli import invoke
from tests.integration.processes import Process, free_port
from tests.shared_data import shared_data_file

pytestmark = pytest.mark.integration

CAPTURES = Path(__file__).resolve().parents[2] / "streamapp" / "captures"
SPOT_CAPTURE = CAPTURES / "binance_spot_btcusdt_trades_2024-08-08.jsonl.gz"
FUTURES_CAPTURE = CAPTURES / "binance_usdm_btcusdt_trades_2024-08-08.jsonl.gz"
KRAKEN_CAPTURE = CAPTURES / "kraken_v2_trades_converted_from_v1_2021-04.jsonl.gz"
EXCHANGES = ("binance", "binanceusdm", "kraken")
MINUTE = 60


def capture_frames(path: Path) -> list[dict]:
    return [json.loads(json.loads(line)["frame"], parse_float=Decimal) for line in gzip.open(path)]


def binance_trades(capture: Path, symbol: str = "BTC/USDT") -> list[dict]:
    """(time s, tie-break, price, qty, taker buys) straight from the frames (spot or futures) of
    ``symbol`` (canonical)."""
    return [{
        "symbol": symbol, "time": Decimal(f["data"]["T"]) / 1000, "order": (f["data"]["T"], f["data"]["t"]),
        "id": str(f["data"]["t"]), "price": Decimal(f["data"]["p"]), "qty": Decimal(f["data"]["q"]),
        "buy": not f["data"]["m"],
    } for f in capture_frames(capture) if f.get("data", {}).get("e") == "trade"]


def all_trades() -> dict[str, list[dict]]:
    """Each exchange's trades: Binance spot, Binance USDⓈ-M futures (the same minutes), Kraken."""
    return {"binance": binance_trades(SPOT_CAPTURE), "binanceusdm": binance_trades(FUTURES_CAPTURE),
            "kraken": kraken_trades()}


def kraken_trades() -> list[dict]:
    trades = []
    for frame in capture_frames(KRAKEN_CAPTURE):
        if frame.get("channel") != "trade":
            continue
        for t in frame["data"]:
            when = datetime.strptime(t["timestamp"].replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
            us = int(when.timestamp()) * 1_000_000 + when.microsecond
            trades.append({
                "symbol": t["symbol"], "time": Decimal(us) / 1_000_000, "order": (us, t["trade_id"]),
                "id": str(t["trade_id"]), "price": t["price"], "qty": t["qty"], "buy": t["side"] == "buy",
            })
    return trades


def reference_candles(trades: list[dict], seconds: int) -> dict[tuple[str, int], dict]:
    """OHLCV per (symbol, window start) with exact decimals; each trade counted once."""
    unique = {(t["symbol"], t["id"]): t for t in trades}.values()
    windows: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for t in unique:
        windows[(t["symbol"], int(t["time"] // seconds) * seconds)].append(t)
    out = {}
    for key, group in windows.items():
        group.sort(key=lambda t: t["order"])
        out[key] = {
            "open": group[0]["price"], "high": max(t["price"] for t in group), "low": min(t["price"] for t in group),
            "close": group[-1]["price"], "volume": sum(t["qty"] for t in group),
            "quote_volume": sum(t["price"] * t["qty"] for t in group), "trade_count": len(group),
            "taker_buy_volume": sum((t["qty"] for t in group if t["buy"]), Decimal(0)),
            "taker_buy_quote_volume": sum((t["price"] * t["qty"] for t in group if t["buy"]), Decimal(0)),
        }
    return out


FIELDS = ("open", "high", "low", "close", "volume", "quote_volume", "trade_count",
          "taker_buy_volume", "taker_buy_quote_volume")


def scope(trades: list[dict]) -> dict:
    """The symbols and trade-time range a capture covers (other tests write other trades)."""
    return {"symbols": sorted({t["symbol"] for t in trades}),
            "first": int(min(t["time"] for t in trades)), "last": int(max(t["time"] for t in trades)) + 1}


def warehouse_candles(client, exchange: str, interval: str, within: dict) -> dict[tuple[str, int], dict]:
    """Candles of ``exchange`` for the symbols of ``within`` whose window overlaps its time range."""
    result = client.query(
        f"SELECT symbol, toUnixTimestamp(window_start) AS start, {', '.join(FIELDS)} "
        f"FROM {tables.candles(interval)} WHERE exchange = {{exchange:String}} AND has({{symbols:Array(String)}}, symbol) "
        f"AND window_start <= toDateTime({{last:Int64}}) AND last_trade_time >= toDateTime64({{first:Int64}}, 6)",
        parameters={"exchange": exchange, **within},
    )
    return {(row[0], row[1]): dict(zip(FIELDS, row[2:])) for row in result.result_rows}


def silver_count(client, exchange: str, within: dict) -> int:
    """Trades in Silver (merged or not: a duplicate would count) for the capture's symbols and time range."""
    return client.command(
        f"SELECT count() FROM {tables.SILVER} WHERE exchange = {{exchange:String}} "
        f"AND has({{symbols:Array(String)}}, symbol) AND trade_time BETWEEN toDateTime64({{first:Int64}}, 6) "
        f"AND toDateTime64({{last:Int64}}, 6)", parameters={"exchange": exchange, **within})


def bronze_count(client, exchange: str) -> int:
    return client.command(f"SELECT count() FROM {tables.bronze(exchange)}")


def wait_for(predicate, timeout_s: float, what: str, logs=()) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.log.name}\n{p.output()[-2000:]}" for p in logs)
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{tails}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def pipeline(migrated, tmp_path_factory):
    """Migrated warehouse, pipeline topics and a running normalizer worker."""
    stack = migrated
    client = connect(stack)
    ensure_topics(stack, topics.PIPELINE_TOPICS)
    logs = tmp_path_factory.mktemp("pipeline")
    worker = Process(["worker"], logs / "worker.log", env={
        "STREAMAPP_WORKER_WEB_PORT": str(free_port()), "STREAMAPP_WORKER_METRICS_PORT": str(free_port())})
    yield client, logs, worker
    worker.stop()


def replay_captures(logs: Path, run: str) -> list[Process]:
    """A fresh simulator serving the spot, futures and Kraken captures at once at full speed, and a
    feed handler per exchange (spot on /stream, futures on /fstream/stream, Kraken on /v2; ``--no-resume``:
    the same trades again, even where the raw topic already holds them)."""
    port = free_port()
    kraken_symbols = sorted({t["symbol"] for t in kraken_trades()})
    simulator = Process(["exchange", "serve", "--capture", str(SPOT_CAPTURE), "--capture", str(FUTURES_CAPTURE),
                         "--capture", str(KRAKEN_CAPTURE), "--speed", "max", "--port", str(port)],
                        logs / f"simulator-{run}.log")
    time.sleep(1.5)
    feeds = [
        Process(["feed", "run", "--exchange", exchange, "--symbols", symbols, "--no-backfill", "--no-resume",
                 "--url", f"ws://127.0.0.1:{port}{path}", "--metrics-port", "0"], logs / f"feed-{exchange}-{run}.log")
        for exchange, symbols, path in (("binance", "BTCUSDT", "/stream"), ("binanceusdm", "BTCUSDT", "/fstream/stream"),
                                        ("kraken", ",".join(kraken_symbols), "/v2"))
    ]
    return [simulator, *feeds]


@pytest.mark.timeout(300)
def test_spot_and_futures_replayed_together_are_two_exchanges_whose_candles_equal_the_reference_and_klines(
        pipeline):
    """Spot and futures BTCUSDT over the same minutes, served at once: ``binance`` candles equal the
    reference computed from the spot trades, ``binanceusdm`` candles equal Binance's official futures
    klines in every field (and the reference from the futures trades); 5m..1d are the 1m rollup."""
    client, logs, worker = pipeline
    trades = all_trades()
    within = {exchange: scope(trades[exchange]) for exchange in EXCHANGES}
    assert within["binance"]["symbols"] == within["binanceusdm"]["symbols"] == ["BTC/USDT"]
    processes = replay_captures(logs, "first")
    try:
        wait_for(lambda: all(silver_count(client, e, within[e]) >= len(trades[e]) for e in EXCHANGES), 180,
                 ", ".join(f"{len(trades[e])} {e}" for e in EXCHANGES) + " trades in Silver", [worker, *processes])
    finally:
        for process in processes:
            process.stop()
    assert {e: silver_count(client, e, within[e]) for e in EXCHANGES} == {e: len(trades[e]) for e in EXCHANGES}

    # 1m candles equal the independent reference, field for field, for each exchange.
    for exchange in EXCHANGES:
        assert warehouse_candles(client, exchange, "1m", within[exchange]) == \
            reference_candles(trades[exchange], MINUTE), exchange
    # Two markets, two sets of candles for the same symbol and minutes.
    spot_1m = warehouse_candles(client, "binance", "1m", within["binance"])
    futures_1m = warehouse_candles(client, "binanceusdm", "1m", within["binanceusdm"])
    assert spot_1m.keys() == futures_1m.keys() and all(spot_1m[k] != futures_1m[k] for k in spot_1m)

    # Binance's own futures klines for the minutes the recording covers completely.
    klines_file = shared_data_file("binance", "binance_klines_1m_BTCUSDT-UMFUT_2024-08-08T2330_2024-08-09T0029.csv")
    klines = {int(row["open_time"]) // 1000: row for row in csv.DictReader(klines_file.open())}
    ours = futures_1m
    covered = [start for start in klines if ("BTC/USDT", start) in ours
               and ("BTC/USDT", start - MINUTE) in ours and ("BTC/USDT", start + MINUTE) in ours]
    assert len(covered) == 1  # 23:56; 23:55 and 23:57 are checked below with their edges
    for start in sorted(s for s in klines if ("BTC/USDT", s) in ours):
        official, candle = klines[start], ours[("BTC/USDT", start)]
        assert candle == {
            "open": Decimal(official["open"]), "high": Decimal(official["high"]), "low": Decimal(official["low"]),
            "close": Decimal(official["close"]), "volume": Decimal(official["volume"]),
            "quote_volume": Decimal(official["quote_volume"]), "trade_count": int(official["count"]),
            "taker_buy_volume": Decimal(official["taker_buy_volume"]),
            "taker_buy_quote_volume": Decimal(official["taker_buy_quote_volume"]),
        }, datetime.fromtimestamp(start, timezone.utc)
    assert sorted(s for s in klines if ("BTC/USDT", s) in ours) == [1723161300, 1723161360, 1723161420]
    # What a user sees: `streamapp tables candles --exchange binanceusdm --symbol BTC/USDT` (the fields it shows).
    result = invoke("tables", "candles", "--exchange", "binanceusdm", "--symbol", "BTC/USDT", "--interval", "1m",
                    "--since", "2024-08-08T23:55", "--until", "2024-08-08T23:58", "--format", "json")
    assert result.exit_code == 0, (result.output, result.exception)
    shown = {int(datetime.fromisoformat(c["window_start"].replace("Z", "+00:00")).timestamp()): c
             for c in json.loads(result.output)}
    assert sorted(shown) == [1723161300, 1723161360, 1723161420]
    for start, candle in shown.items():
        official = klines[start]
        assert {f: Decimal(candle[f]) for f in ("open", "high", "low", "close", "volume", "quote_volume")} == {
            f: Decimal(official[f]) for f in ("open", "high", "low", "close", "volume", "quote_volume")}, start
        assert candle["trade_count"] == int(official["count"]), start

    # 5m ... 1d are the rollup of 1m, and equal the reference computed from the trades at that interval.
    for interval, seconds in (("5m", 300), ("15m", 900), ("30m", 1800), ("1h", 3600), ("1d", 86400)):
        for exchange in EXCHANGES:
            assert warehouse_candles(client, exchange, interval, within[exchange]) == \
                reference_candles(trades[exchange], seconds), (exchange, interval)
            rolled: dict = defaultdict(list)
            for (symbol, start), candle in sorted(warehouse_candles(client, exchange, "1m", within[exchange]).items()):
                rolled[(symbol, start // seconds * seconds)].append(candle)
            expected = {key: {
                "open": group[0]["open"], "high": max(c["high"] for c in group), "low": min(c["low"] for c in group),
                "close": group[-1]["close"], **{f: sum(c[f] for c in group) for f in FIELDS[4:]},
            } for key, group in rolled.items()}
            assert warehouse_candles(client, exchange, interval, within[exchange]) == expected, (exchange, interval)


@pytest.mark.timeout(300)
def test_replaying_the_same_capture_changes_no_trade_and_no_candle(pipeline):
    client, logs, worker = pipeline
    trades = all_trades()
    within = {exchange: scope(trades[exchange]) for exchange in EXCHANGES}
    wait_for(lambda: all(silver_count(client, e, within[e]) >= len(trades[e]) for e in EXCHANGES), 180,
             "the first replay in Silver", [worker])
    before_silver = {e: silver_count(client, e, within[e]) for e in EXCHANGES}
    before_gold = {(e, i): warehouse_candles(client, e, i, within[e]) for e in EXCHANGES for i in tables.INTERVALS}
    before_bronze = {e: bronze_count(client, e) for e in EXCHANGES}

    processes = replay_captures(logs, "again")
    try:
        # Bronze keeps every delivery: once it has grown by the whole capture, the replay reached ClickHouse.
        wait_for(lambda: all(bronze_count(client, e) >= before_bronze[e] + len(trades[e]) for e in EXCHANGES),
                 180, "the replayed trades in Bronze", [worker, *processes])
    finally:
        for process in processes:
            process.stop()
    time.sleep(1)  # views run in the same insert; a little slack for the last block

    assert {e: silver_count(client, e, within[e]) for e in EXCHANGES} == before_silver
    assert before_silver == {e: len(trades[e]) for e in EXCHANGES}
    for (exchange, interval), candles in before_gold.items():
        assert warehouse_candles(client, exchange, interval, within[exchange]) == candles, (exchange, interval)


@pytest.mark.timeout(180)
def test_a_late_trade_updates_its_old_candle(stack, pipeline):
    """A trade arriving after its minute's candle exists lands in that candle (by trade time, not arrival)."""
    import uuid

    from confluent_kafka import Producer

    from streamapp import headers

    client, _logs, _worker = pipeline
    settings = stack
    base = 7 * 10**15 + int(uuid.uuid4().int % 10**9) * 100  # fresh trade ids for this run
    # An hour of 2024 (ms) that only this test writes for ETH/USDT, new each run: a data directory
    # kept from an earlier run still holds that run's candles.
    minute = 1704067200_000 + int(uuid.uuid4().int % 8784) * 3_600_000
    window = {"symbols": ["ETH/USDT"], "first": minute // 1000, "last": minute // 1000 + 120}

    def frame(trade_id: int, at_ms: int, price: str) -> bytes:
        data = {"e": "trade", "E": at_ms, "T": at_ms, "s": "ETHUSDT", "t": trade_id, "p": price, "q": "1.000",
                "X": "MARKET", "m": False}
        return json.dumps({"stream": "ethusdt@trade", "data": data}, separators=(",", ":")).encode()

    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True})

    def publish(*frames: bytes) -> None:
        for value in frames:
            producer.produce(topics.raw("binanceusdm"), value, b"ETHUSDT",
                             headers=[(headers.RECEIVE_TIME_US, str(time.time_ns() // 1000).encode())])
        assert producer.flush(30) == 0

    def candle(interval: str) -> dict | None:  # the window starting at `minute` (also an hour start)
        return warehouse_candles(client, "binanceusdm", interval, window).get(("ETH/USDT", minute // 1000))

    publish(frame(base + 1, minute + 10_000, "2000.0"), frame(base + 2, minute + 70_000, "2010.0"))
    wait_for(lambda: (candle("1m") or {}).get("trade_count") == 1, 120, "the first ETH/USDT candle")
    before = candle("1m")

    # Late: trade time inside the first minute (between the two), price above its high, published after both.
    publish(frame(base + 3, minute + 30_000, "2100.0"))
    wait_for(lambda: candle("1m")["trade_count"] == before["trade_count"] + 1, 120, "the late trade in its candle")
    after = candle("1m")
    assert after["high"] == Decimal("2100.0") and after["close"] == Decimal("2100.0")  # last by trade time
    assert after["open"] == before["open"] == Decimal("2000.0")
    assert after["volume"] == before["volume"] + 1
    assert candle("1h")["trade_count"] == 3 and candle("1h")["close"] == Decimal("2010.0")


@pytest.mark.timeout(180)
def test_a_spot_trade_and_a_futures_trade_with_the_same_id_both_reach_silver(stack, pipeline):
    """Trade ids are per market: the same id on Binance spot and on USDⓈ-M futures is two trades.
    (Under one exchange id, Silver's dedup dropped the second as a repeat of the first.)"""
    import uuid

    from confluent_kafka import Producer

    from streamapp import headers

    client, _logs, _worker = pipeline
    trade_id = 8 * 10**15 + int(uuid.uuid4().int % 10**9)  # fresh each run
    at_ms = 1704067200_000 + int(uuid.uuid4().int % 8784) * 3_600_000 + 1_000  # an hour of 2024, new each run
    spot = {"stream": "solusdt@trade", "data": {"e": "trade", "E": at_ms, "s": "SOLUSDT", "t": trade_id,
                                                 "p": "100.00000000", "q": "1.00000000", "T": at_ms, "m": False,
                                                 "M": True}}
    futures = {"stream": "solusdt@trade", "data": {"e": "trade", "E": at_ms, "T": at_ms, "s": "SOLUSDT",
                                                    "t": trade_id, "p": "100.10", "q": "2", "X": "MARKET", "m": True}}
    producer = Producer({**stack.kafka_client_config(), "enable.idempotence": True})
    for exchange, frame in (("binance", spot), ("binanceusdm", futures)):
        producer.produce(topics.raw(exchange), json.dumps(frame, separators=(",", ":")).encode(), b"SOLUSDT",
                         headers=[(headers.RECEIVE_TIME_US, str(time.time_ns() // 1000).encode())])
        assert producer.flush(30) == 0

    def silver_rows() -> list[tuple]:
        return client.query(
            f"SELECT exchange, trade_id, price, quantity, side FROM {tables.SILVER} "
            "WHERE symbol = 'SOL/USDT' AND trade_id = {id:String} ORDER BY exchange",
            parameters={"id": str(trade_id)}).result_rows

    wait_for(lambda: len(silver_rows()) >= 2, 120, "the spot and the futures trade in Silver")
    time.sleep(1)  # a duplicate would land in the same blocks
    assert silver_rows() == [
        ("binance", str(trade_id), Decimal("100"), Decimal("1"), "buy"),
        ("binanceusdm", str(trade_id), Decimal("100.1"), Decimal("2"), "sell"),
    ]
