"""`exchange serve --repeat N`: a short capture replayed N times, every round with new, gap-free trade ids
and later times (what bench/soak.py serves for half an hour from a one-minute capture)."""

from __future__ import annotations

import asyncio
import gzip
import json

import aiohttp
import orjson
import pytest

from streamapp.simulator.capture import load
from streamapp.simulator.server import RunningSimulator, Simulator
from tests.integration.feeds.test_feed_simulator import SPOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

KRAKEN_CAPTURE = SPOT.parent / "kraken_v2_trades_converted_from_v1_2021-04.jsonl.gz"


def capture(path, ids: range, first_ms: int, step_ms: int):
    with gzip.open(path, "wt") as out:
        for n, trade_id in enumerate(ids):
            ts = first_ms + n * step_ms
            data = {"e": "trade", "E": ts, "T": ts, "s": "BTCUSDT", "t": trade_id, "p": "60000.0", "q": "0.001",
                    "m": False}
            frame = json.dumps({"stream": "btcusdt@trade", "data": data})
            out.write(json.dumps({"receive_time_us": ts * 1000, "exchange": "binance", "frame": frame}) + "\n")
    return path


def test_each_round_moves_ids_by_the_id_span_and_times_by_the_capture_duration(tmp_path):
    path = capture(tmp_path / "c.jsonl.gz", range(100, 105), first_ms=1_700_000_000_000, step_ms=10)

    async def go():
        sim = Simulator(load([path]), repeat=3)
        async with RunningSimulator(sim) as rs, aiohttp.ClientSession() as http:
            async with http.ws_connect(rs.ws_url("/stream?streams=btcusdt@trade")) as ws:
                frames = []
                while True:
                    try:
                        msg = await ws.receive(timeout=1.5)
                    except asyncio.TimeoutError:
                        return frames  # nothing after the last round
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        return frames
                    frames.append(orjson.loads(msg.data)["data"])

    trades = asyncio.run(go())
    assert [t["t"] for t in trades] == list(range(100, 115))  # 3 rounds, ids contiguous, none twice
    # times: 5 trades 10 ms apart make a 50 ms round (duration 40 ms + one mean step)
    assert [t["T"] for t in trades] == [1_700_000_000_000 + 10 * n for n in range(15)]
    assert all(t["E"] == t["T"] for t in trades)


def test_repeat_is_for_binance_captures_and_one_round_is_the_capture_as_it_is(tmp_path):
    with pytest.raises(ValueError, match="Binance"):
        Simulator(load([KRAKEN_CAPTURE]), repeat=2)
    with pytest.raises(ValueError, match="1 or more"):
        Simulator(load([SPOT]), repeat=0)
    sim = Simulator(load([SPOT]))
    item = sim.timelines["binance"].items[0]
    assert sim._frame("binance", item, 0) == item.frame.decode()


def test_rest_history_serves_the_later_rounds_so_a_feed_can_backfill_them(tmp_path):
    path = capture(tmp_path / "c.jsonl.gz", range(100, 105), first_ms=1_700_000_000_000, step_ms=10)

    async def go():
        sim = Simulator(load([path]), repeat=3)
        async with RunningSimulator(sim) as rs, aiohttp.ClientSession() as http:
            async with http.get(rs.url("/api/v3/historicalTrades?symbol=BTCUSDT&fromId=103&limit=6")) as r:
                page = orjson.loads(await r.read())
            async with http.get(rs.url("/api/v3/historicalTrades?symbol=BTCUSDT&fromId=112&limit=10")) as r:
                last = orjson.loads(await r.read())
        return page, last

    page, last = asyncio.run(go())
    assert [row["id"] for row in page] == [103, 104, 105, 106, 107, 108]  # across rounds 0 and 1
    assert [row["time"] for row in page] == [1_700_000_000_000 + 10 * n for n in range(3, 9)]
    assert [row["id"] for row in last] == [112, 113, 114]  # nothing beyond the last round
