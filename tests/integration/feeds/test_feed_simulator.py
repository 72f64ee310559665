"""The real feed handler against the simulator and the real broker (the local stack's).

Each test publishes to its own topic (the handler's ``topic`` override) and reads it back with
confluent-kafka: byte-for-byte frames, per-symbol order, headers, gaps and backfill.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from streamapp import headers
from streamapp.clients.kafka import ensure_topics
from streamapp.feeds.gaps import Gap
from streamapp.feeds.handler import FeedHandler, FeedOptions
from streamapp.pipeline import SIMULATOR_PATHS
from streamapp.settings import Settings
from streamapp.simulator.capture import load
from streamapp.simulator.faults import Faults
from streamapp.simulator.server import RunningSimulator, Simulator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CAPTURES = Path(__file__).resolve().parents[3] / "streamapp" / "captures"
SPOT = CAPTURES / "binance_spot_btcusdt_trades_2024-08-08.jsonl.gz"
KRAKEN = CAPTURES / "kraken_v2_trades_converted_from_v1_2021-04.jsonl.gz"


def capture_frames(path: Path) -> list[bytes]:
    with gzip.open(path) as fh:
        return [orjson.loads(line)["frame"].encode() for line in fh]


def new_topic(settings: Settings, exchange: str) -> str:
    topic = f"test.feed.{uuid.uuid4().hex[:10]}.{exchange}.raw"
    ensure_topics(settings, [topic], partitions=3)
    return topic


def consume(settings: Settings, topic: str, count: int, timeout_s: float = 60.0) -> list:
    consumer = Consumer(settings.kafka_client_config() | {
        "group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False})
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])  # offset 0: from the start
    records, deadline = [], time.monotonic() + timeout_s
    try:
        while len(records) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                records.append(msg)
        # anything extra (duplicates) would show up now
        extra_deadline = time.monotonic() + 1.0
        while time.monotonic() < extra_deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                records.append(msg)
    finally:
        consumer.close()
    return records


async def run_feed(settings, simulator: Simulator, exchange: str, symbols: list[str], topic: str, *,
                   until, timeout_s: float = 60.0, backfill: bool = False, **options) -> FeedHandler:
    """A feed handler on the simulator's path for ``exchange`` until ``until(handler)``; with ``backfill``,
    gaps are backfilled from the simulator's REST endpoints."""
    async with RunningSimulator(simulator) as sim:
        if backfill:
            options["rest_url"] = sim.url("")
        handler = FeedHandler(settings, FeedOptions(exchange, symbols, url=sim.ws_url(SIMULATOR_PATHS[exchange]),
                                                    topic=topic, backoff_base_s=0.05, backoff_cap_s=0.5, **options))
        stop = asyncio.Event()
        task = asyncio.create_task(handler.run(stop))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not task.done():
            if handler.runner is not None and until(handler):
                break
            await asyncio.sleep(0.05)
        assert not task.done(), "the feed handler stopped by itself"
        stop.set()
        await asyncio.wait_for(task, 40)
    return handler


def header(msg, name: str) -> bytes:
    return dict(msg.headers())[name]


def ws_records(records):
    return [r for r in records if header(r, headers.SOURCE) == headers.SOURCE_WS]


def by_key(records) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for r in sorted(records, key=lambda r: (r.partition(), r.offset())):
        out.setdefault(r.key(), []).append(r.value())
    return out


@pytest.fixture(scope="module")
def settings(stack) -> Settings:
    return stack


def test_binance_capture_arrives_byte_for_byte_in_order(settings):
    frames = capture_frames(SPOT)
    topic = new_topic(settings, "binance")
    began = time.monotonic()
    handler = asyncio.run(run_feed(settings, Simulator(load([SPOT])), "binance", ["btcusdt"], topic,
                                   until=lambda h: h.publisher.delivered >= len(frames)))
    elapsed = time.monotonic() - began
    records = consume(settings, topic, len(frames))
    assert by_key(records) == {b"BTCUSDT": frames}
    first = records[0]
    assert header(first, headers.SOURCE) == b"ws"
    assert header(first, headers.CONNECTION_ID).startswith(b"binance-0-")
    assert abs(int(header(first, headers.RECEIVE_TIME_US)) / 1e6 - time.time()) < 120
    assert handler.runner.counts == {"ack": 1, "trade": len(frames)}
    assert handler.sink.gaps == [] and handler.publisher.dropped == 0
    print(f"{len(frames)} frames through simulator+handler+broker in {elapsed:.2f}s")


def test_binance_faults_disconnects_skips_malformed_shutdown(settings):
    """Disconnect every 700 frames, skip 3 ids after every 500, a malformed frame every 300,
    serverShutdown once: nothing received is lost, the gaps are the skipped ranges, backfill fills them."""
    frames = capture_frames(SPOT)
    ids = [orjson.loads(f)["data"]["t"] for f in frames]
    topic = new_topic(settings, "binance")
    faults = Faults(drop_every=700, skip_every=500, skip_count=3, malformed_every=300, shutdown_grace_s=0.5)
    simulator = Simulator(load([SPOT]), faults=faults)
    simulator.faults.request("shutdown")

    async def go():
        return await run_feed(settings, simulator, "binance", ["BTCUSDT"], topic, backfill=True,
                              overlap_s=0.3, until=lambda h: (
                                  h.runner.counts.get("trade", 0) + 0 >= len(frames) - len(simulator.skipped)
                                  and h.publisher.delivered >= len(frames) - len(simulator.skipped) + len(h.sink.gaps)
                                  and h.backfiller.backfilled >= len(simulator.skipped)))

    handler = asyncio.run(go())

    skipped_ids = sorted(ids[seq] for _stream, seq in simulator.skipped)
    assert skipped_ids, "the skip fault did not fire"
    expected_gaps, run = [], [skipped_ids[0]]
    for i in skipped_ids[1:]:
        if i == run[-1] + 1:
            run.append(i)
        else:
            expected_gaps.append(Gap("BTCUSDT", run[0], run[-1]))
            run = [i]
    expected_gaps.append(Gap("BTCUSDT", run[0], run[-1]))
    assert handler.sink.gaps == expected_gaps

    sent = [f for f, i in zip(frames, ids) if i not in set(skipped_ids)]
    records = consume(settings, topic, len(sent) + len(expected_gaps))
    assert by_key(ws_records(records)) == {b"BTCUSDT": sent}  # every received trade frame, once, in order
    backfills = [r for r in records if header(r, headers.SOURCE) == headers.SOURCE_BACKFILL]
    got = sorted(t["id"] for r in backfills for t in orjson.loads(r.value()))
    assert got == skipped_ids
    assert sorted(header(r, headers.BACKFILL_RANGE) for r in backfills) == sorted(
        f"{g.first}-{g.last}".encode() for g in expected_gaps)
    assert handler.runner.counts["malformed"] >= 1 and handler.runner.counts["shutdown"] == 1
    assert handler.runner.reconnects >= len(frames) // 700
    assert handler.publisher.dropped == 0


def test_binance_stall_is_detected_and_reconnected(settings):
    frames = capture_frames(SPOT)[:600]
    topic = new_topic(settings, "binance")
    simulator = Simulator(load([SPOT]), faults=Faults(stall_every=200, stall_s=30))
    handler = asyncio.run(run_feed(settings, simulator, "binance", ["BTCUSDT"], topic, idle_timeout_s=1.0,
                                   until=lambda h: h.publisher.delivered >= len(frames), timeout_s=30))
    assert handler.runner.reconnects >= 2
    records = consume(settings, topic, len(frames))
    assert by_key(records)[b"BTCUSDT"][:len(frames)] == frames


def test_kraken_v2_capture_arrives_byte_for_byte_with_snapshot_dedupe(settings):
    frames = capture_frames(KRAKEN)
    symbols = sorted({orjson.loads(f)["data"][0]["symbol"] for f in frames})
    topic = new_topic(settings, "kraken")
    simulator = Simulator(load([KRAKEN]), faults=Faults(drop_every=7))
    handler = asyncio.run(run_feed(settings, simulator, "kraken", symbols, topic,
                                   until=lambda h: h.publisher.delivered >= len(frames)))
    records = consume(settings, topic, len(frames))
    expected: dict[bytes, list[bytes]] = {}
    for f in frames:
        expected.setdefault(orjson.loads(f)["data"][0]["symbol"].encode(), []).append(f)
    assert by_key(records) == expected
    # each reconnect gets a snapshot of earlier trades: counted, dropped as duplicates, never published
    assert handler.runner.reconnects >= 2 and handler.sink.duplicates >= 1
    assert handler.runner.counts["status"] >= 3 and handler.runner.counts["ack"] >= len(symbols)
    assert handler.sink.gaps == []
