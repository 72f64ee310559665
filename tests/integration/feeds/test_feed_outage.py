"""A broker outage (private Kafka, restarted mid-stream) loses nothing the handler received.

The shared broker cannot be restarted, so this test runs a private one (the ``broker``
fixture), stops it while the simulator streams, and starts it again ~30 s later.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from streamapp.clients.kafka import ensure_topics
from streamapp.feeds.handler import FeedHandler, FeedOptions
from streamapp.simulator.capture import load
from streamapp.simulator.server import RunningSimulator, Simulator
from tests.integration.feeds.test_feed_simulator import SPOT, by_key, capture_frames, consume

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

OUTAGE_S = 30.0


def test_broker_restart_loses_nothing(broker):
    settings = broker.settings
    frames = capture_frames(SPOT)
    topic = "test.feed.outage.binance.raw"
    ensure_topics(settings, [topic], timeout_s=60)

    async def go():
        async with RunningSimulator(Simulator(load([SPOT]), speed=3.0)) as sim:  # 3 min capture -> ~60 s
            handler = FeedHandler(settings, FeedOptions("binance", ["BTCUSDT"], url=sim.ws_url("/stream"),
                                                        topic=topic, message_timeout_s=180))
            stop = asyncio.Event()
            task = asyncio.create_task(handler.run(stop))
            await asyncio.sleep(5)
            before = handler.publisher.delivered
            down_at = time.monotonic()
            await asyncio.to_thread(broker.stop)
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
            buffered_peak = handler.publisher.buffered()
            start_s = await asyncio.to_thread(broker.start)
            outage = time.monotonic() - down_at
            while handler.runner.counts.get("trade", 0) < len(frames) or handler.publisher.delivered < len(frames):
                assert not task.done()
                await asyncio.sleep(0.2)
            stop.set()
            await task
            return handler, before, buffered_peak, outage, start_s

    handler, before, peak, outage, start_s = asyncio.run(go())
    print(f"outage {outage:.1f}s (broker start {start_s:.1f}s); delivered before {before}; "
          f"buffered at restart {peak}; total {handler.publisher.delivered}")
    assert before > 0 and peak > 0 and outage >= OUTAGE_S
    assert handler.publisher.dropped == 0 and handler.publisher.failed == 0
    records = consume(settings, topic, len(frames), timeout_s=60)
    assert by_key(records) == {b"BTCUSDT": frames}
