"""Fault test, whole pipeline: a feed SIGKILLed and restarted while the exchange keeps sending.

simulator (live: its streams run on the wall clock, so trades sent while the feed is down are
gone from the WebSocket) -> ``streamapp feed run`` (killed with SIGKILL, then started again) ->
raw topic -> ``streamapp worker`` -> ClickHouse. The restarted feed resumes from the last trade
id on the raw topic, backfills the gap from REST, and every trade id is in Silver exactly once.

The trades are the real Binance spot capture moved to a fresh hour of 2024 and a symbol of
its own each run (``Z<hex>USDT``, accepted through ``STREAMAPP_BINANCE_SYMBOLS``), so no other
test's trades (the same capture, candles checked against the official klines) and no earlier
run's records on the raw topic (where the feed resumes from) share its symbol.
"""

from __future__ import annotations

import gzip
import random
import time

import orjson
import pytest

from streamapp import tables, topics
from streamapp.clients.clickhouse import connect
from streamapp.clients.kafka import ensure_topics
from tests.integration.processes import Process, free_port
from tests.integration.feeds.test_feed_simulator import SPOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SPEED = 6.0  # the 3-minute capture in 30 s


def moved_capture(path, out, *, symbol: str, id_base: int, shift_ms: int) -> list[int]:
    """The spot capture as ``symbol`` with ids from ``id_base`` and times shifted by ``shift_ms``."""
    ids = []
    with gzip.open(path) as src, gzip.open(out, "wb") as dst:
        for line in src:
            rec = orjson.loads(line)
            frame = orjson.loads(rec["frame"])
            data = frame["data"]
            data["t"] = id_base + len(ids)
            ids.append(data["t"])
            data["s"] = symbol
            data["E"] += shift_ms
            data["T"] += shift_ms
            frame["stream"] = f"{symbol.lower()}@trade"
            dst.write(orjson.dumps({"receive_time_us": rec["receive_time_us"] + shift_ms * 1000,
                                    "exchange": "binance", "frame": orjson.dumps(frame).decode()}) + b"\n")
    return ids


def silver_counts(client, symbol: str, first: int, last: int) -> dict[int, int]:
    """How many Silver rows each binance trade id in ``first..last`` of ``symbol`` (canonical) has
    (unmerged: a duplicate counts)."""
    rows = client.query(
        f"SELECT trade_seq, count() FROM {tables.SILVER} WHERE exchange = 'binance' AND symbol = {{symbol:String}} "
        "AND trade_seq BETWEEN {first:Int64} AND {last:Int64} GROUP BY trade_seq",
        parameters={"symbol": symbol, "first": first, "last": last}).result_rows
    return {int(seq): int(n) for seq, n in rows}


def wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_a_feed_killed_and_restarted_mid_stream_gets_every_trade_into_silver_exactly_once(migrated, tmp_path):
    client = connect(migrated)
    ensure_topics(migrated, topics.PIPELINE_TOPICS)
    rng = random.Random()
    base = f"Z{rng.randrange(16**6):06X}"
    symbol, canonical = f"{base}USDT", f"{base}/USDT"
    shift_ms = (1704067200_000 + rng.randrange(8784) * 3_600_000) - 1723161300_000  # a fresh hour of 2024
    capture = tmp_path / "moved.jsonl.gz"
    ids = moved_capture(SPOT, capture, symbol=symbol, id_base=3735684134, shift_ms=shift_ms)

    def counts() -> dict[int, int]:
        return silver_counts(client, canonical, ids[0], ids[-1])

    port = free_port()
    processes = [Process(["worker"], tmp_path / "worker.log", env={
        "STREAMAPP_WORKER_WEB_PORT": str(free_port()), "STREAMAPP_WORKER_METRICS_PORT": str(free_port()),
        "STREAMAPP_BINANCE_SYMBOLS": symbol})]
    # The simulator lists only its capture's symbols, and the feed may start before it listens:
    # the fresh symbol is accepted on top of whichever list the feed gets.
    feed_env = {"STREAMAPP_BINANCE_SYMBOLS": symbol}
    feed_args = ["feed", "run", "--exchange", "binance", "--symbols", symbol, "--metrics-port", "0",
                 "--url", f"ws://127.0.0.1:{port}/stream", "--rest-url", f"http://127.0.0.1:{port}"]
    try:
        processes.append(Process(["exchange", "serve", "--capture", str(capture), "--speed", str(SPEED), "--live",
                                  "--port", str(port)], tmp_path / "simulator.log"))
        feed = Process(feed_args, tmp_path / "feed-1.log", env=feed_env)
        processes.append(feed)
        assert wait_for(lambda: len(counts()) >= 200, 90), feed.output()[-3000:]
        feed.kill()  # SIGKILL: whatever its producer still buffered is lost with it
        killed_at = time.monotonic()
        time.sleep(3.0)  # the exchange goes on: ~430 trades sent to nobody
        restarted = Process(feed_args, tmp_path / "feed-2.log", env=feed_env)
        down_s = time.monotonic() - killed_at
        processes.append(restarted)
        complete = wait_for(lambda: len(counts()) >= len(ids), 150)
        time.sleep(2)  # a duplicate would arrive with the last blocks
        found = counts()
    finally:
        for process in reversed(processes):
            process.stop()
    restarted_log = restarted.output()
    missing = [i for i in ids if i not in found]
    assert complete and not missing, (f"{len(missing)} of {len(ids)} trades never reached Silver, e.g. {missing[:5]}"
                                      f"\n{restarted_log[-3000:]}")
    duplicated = {i: n for i, n in found.items() if n != 1}
    assert not duplicated, f"trades in Silver more than once: {list(duplicated.items())[:5]}"
    assert set(found) == set(ids)
    assert f"GAP in {symbol}" in restarted_log and "resumes" in restarted_log, restarted_log[-3000:]
    print(f"feed down {down_s:.1f}s; {len(ids)} trades, each once in Silver")
