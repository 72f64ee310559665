"""The USDⓈ-M futures feed (``binanceusdm``) against the simulator and the real broker.

The simulator serves the spot and futures captures at once, each as its own exchange: futures on
``/fstream/stream`` with REST history on ``/fapi/v1/historicalTrades``, spot on ``/stream`` and
``/api/v3/historicalTrades``, as Binance serves them from different hosts.
"""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from streamapp import headers
from streamapp.settings import Settings
from streamapp.simulator.capture import load
from streamapp.simulator.faults import Faults
from streamapp.simulator.server import RunningSimulator, Simulator
from tests.integration.feeds.test_feed_simulator import (
    CAPTURES, SPOT, by_key, capture_frames, consume, header, new_topic, run_feed,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FUTURES = CAPTURES / "binance_usdm_btcusdt_trades_2024-08-08.jsonl.gz"


@pytest.fixture(scope="module")
def settings(stack) -> Settings:
    return stack


def test_the_simulator_serves_futures_history_as_fapi_does_and_spot_history_as_spot_does():
    async def go():
        async with RunningSimulator(Simulator(load([SPOT, FUTURES]))) as rs, aiohttp.ClientSession() as http:
            async def get(path: str) -> list[dict]:
                async with http.get(rs.url(path)) as response:
                    assert response.status == 200, await response.text()
                    return orjson.loads(await response.read())

            futures = await get("/fapi/v1/historicalTrades?symbol=BTCUSDT&fromId=5266585687&limit=2")
            capped = await get("/fapi/v1/historicalTrades?symbol=BTCUSDT&fromId=5266585686&limit=1000")
            default = await get("/fapi/v1/historicalTrades?symbol=BTCUSDT&fromId=5266585686")
            spot = await get("/api/v3/historicalTrades?symbol=BTCUSDT&fromId=3735684134&limit=1")
        return futures, capped, default, spot

    futures, capped, default, spot = asyncio.run(go())
    # the second and third futures trades of the capture, in fapi's shape (no isBestMatch)
    assert futures == [
        {"id": 5266585687, "price": "61807.80", "qty": "0.001", "quoteQty": "61.80780", "time": 1723161300016,
         "isBuyerMaker": False},
        {"id": 5266585688, "price": "61807.80", "qty": "0.041", "quoteQty": "2534.11980", "time": 1723161300016,
         "isBuyerMaker": False},
    ]
    assert len(capped) == 500 and len(default) == 100  # fapi: max 500, default 100
    assert [row["id"] for row in capped] == list(range(5266585686, 5266585686 + 500))
    assert spot[0]["id"] == 3735684134 and spot[0]["isBestMatch"] is True  # spot's own trades, spot's shape


def test_the_futures_feed_publishes_futures_frames_byte_for_byte_and_backfills_gaps_from_fapi(settings):
    """Spot is served too, on the same symbol: the futures path must carry only futures frames."""
    frames = capture_frames(FUTURES)
    ids = [orjson.loads(f)["data"]["t"] for f in frames]
    topic = new_topic(settings, "binanceusdm")
    simulator = Simulator(load([SPOT, FUTURES]), faults=Faults(skip_every=2000, skip_count=3))

    handler = asyncio.run(run_feed(
        settings, simulator, "binanceusdm", ["BTCUSDT"], topic, backfill=True, timeout_s=90, until=lambda h: (
            h.backfiller is not None and simulator.skipped and h.backfiller.backfilled >= len(simulator.skipped)
            and h.publisher.delivered >= len(frames) - len(simulator.skipped) + len(h.sink.gaps))))
    skipped = sorted(ids[seq] for _stream, seq in simulator.skipped)
    assert len(skipped) == 4 * 3 and len(handler.sink.gaps) == 4  # a gap of 3 after every 2000 frames
    sent = [f for f, i in zip(frames, ids) if i not in set(skipped)]
    records = consume(settings, topic, len(sent) + len(handler.sink.gaps))
    live = [r for r in records if header(r, headers.SOURCE) == headers.SOURCE_WS]
    assert by_key(live) == {b"BTCUSDT": sent}
    assert header(live[0], headers.CONNECTION_ID).startswith(b"binanceusdm-")
    backfills = [r for r in records if header(r, headers.SOURCE) == headers.SOURCE_BACKFILL]
    assert sorted(row["id"] for r in backfills for row in orjson.loads(r.value())) == skipped
    assert all(b"/fapi/v1/historicalTrades?symbol=BTCUSDT&fromId=" in header(r, headers.BACKFILL_URL)
               for r in backfills)
    assert handler.publisher.dropped == 0 and handler.backfiller.failed == []
