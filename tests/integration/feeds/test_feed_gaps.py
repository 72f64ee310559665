"""No silent loss in the feed: what it did not publish becomes a gap, and gaps are backfilled.

The real feed handler against the simulator (live and REST) and the local stack's broker,
each test on its own topic; what reached the topic is read back and normalized with the
normalizer's own functions, so "covered" means the worker would publish those trades.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
import uuid

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streamapp import headers
from streamapp.clients.kafka import ensure_topics
from streamapp.feeds import metrics
from streamapp.feeds.gaps import Gap
from streamapp.feeds.handler import FeedHandler, FeedOptions
from streamapp.feeds.resume import watermarks
from streamapp.normalize import binance as normalize_binance
from streamapp.normalize import kraken as normalize_kraken
from streamapp.normalize.symbols import DEFAULT_BINANCE_MAP, DEFAULT_KRAKEN_MAP
from streamapp.settings import Settings
from streamapp.simulator.capture import load
from streamapp.simulator.server import RunningSimulator, Simulator
from tests.integration.feeds.test_feed_simulator import KRAKEN, SPOT, capture_frames, new_topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SPOT_IDS = [orjson.loads(f)["data"]["t"] for f in capture_frames(SPOT)]
NORMALIZERS = {"binance": (normalize_binance, DEFAULT_BINANCE_MAP), "kraken": (normalize_kraken, DEFAULT_KRAKEN_MAP)}


@pytest.fixture(scope="module")
def settings(stack) -> Settings:
    return stack


def read_topic(settings: Settings, topic: str) -> list:
    """Every record of ``topic`` now, in (partition, offset) order."""
    consumer = Consumer(settings.kafka_client_config() | {
        "group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = {p: watermarks(consumer, topic, p, time.monotonic() + 10)[1] for p in meta.partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        records, seen = [], dict.fromkeys(ends, 0)
        deadline = time.monotonic() + 20
        while any(seen[p] < ends[p] for p in ends) and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                records.append(msg)
                seen[msg.partition()] = msg.offset() + 1
    finally:
        consumer.close()
    return sorted(records, key=lambda r: (r.partition(), r.offset()))


def normalized(exchange: str, records) -> list:
    """The trades the normalizer makes of ``records`` (live frames and backfill bodies), in record order."""
    module, symbols = NORMALIZERS[exchange]
    trades = []
    for r in records:
        hdrs = dict(r.headers() or ())
        common = dict(receive_time_us=int(hdrs[headers.RECEIVE_TIME_US]), raw_partition=r.partition(),
                      raw_offset=r.offset(), symbols=symbols, now_us=time.time_ns() // 1000, max_skew_us=5_000_000)
        if hdrs.get(headers.SOURCE) == headers.SOURCE_BACKFILL:
            first, last = map(int, hdrs[headers.BACKFILL_RANGE].split(b"-"))
            result = module.normalize_backfill(r.value(), exchange_symbol=r.key().decode(), first_id=first,
                                               last_id=last, **common)
        else:
            result = module.normalize(r.value(), **common)
        assert isinstance(result, tuple), (result, r.value()[:300])
        trades.extend(result)
    return trades


def published_ids(settings: Settings, topic: str, exchange: str = "binance") -> list[int]:
    """Trade ids the normalizer would publish from ``topic``, sorted (an id backfilled again twice)."""
    return sorted(t.trade_seq for t in normalized(exchange, read_topic(settings, topic)))


async def wait_until(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return True
        await asyncio.sleep(0.3)
    return False


def feed_options(sim: RunningSimulator, exchange: str, symbols: list[str], topic: str, **options) -> FeedOptions:
    return FeedOptions(exchange, symbols, url=sim.ws_url("/stream" if exchange == "binance" else "/v2"), topic=topic,
                       backoff_base_s=0.05, backoff_cap_s=0.5, **options)


class Running:
    """A feed handler running in this event loop until ``stop()``."""

    def __init__(self, settings: Settings, options: FeedOptions) -> None:
        self.handler = FeedHandler(settings, options)
        self._stop = asyncio.Event()
        self.task = asyncio.create_task(self.handler.run(self._stop))

    async def stop(self) -> FeedHandler:
        assert not self.task.done(), "the feed handler stopped by itself"
        self._stop.set()
        await asyncio.wait_for(self.task, 40)
        return self.handler


def test_a_restarted_feed_resumes_from_its_last_published_trade_and_backfills_what_it_missed(settings):
    """The simulator runs live (on the wall clock) while the feed is down for 2 s: the restarted feed
    reads where it stopped from the raw topic, sees the gap at its first frame, and fills it from REST."""
    topic = new_topic(settings, "binance")
    simulator = Simulator(load([SPOT]), speed=10.0, live=True)  # 4,335 trades in 18 s

    async def go():
        async with RunningSimulator(simulator) as sim:
            first = Running(settings, feed_options(sim, "binance", ["BTCUSDT"], topic))
            assert await wait_until(lambda: first.handler.publisher is not None
                                    and first.handler.publisher.delivered >= 300, 30)
            await first.stop()
            before = published_ids(settings, topic)
            await asyncio.sleep(2.0)  # the exchange goes on: ~480 trades nobody receives
            second = Running(settings, feed_options(sim, "binance", ["BTCUSDT"], topic, rest_url=sim.url("")))
            covered = await wait_until(lambda: published_ids(settings, topic)[-1] >= before[-1] + 1000
                                       and set(SPOT_IDS[:len(set(published_ids(settings, topic)))])
                                       == set(published_ids(settings, topic)), 30)
            return before, await second.stop(), covered

    before, second, covered = asyncio.run(go())
    after = published_ids(settings, topic)
    assert before == SPOT_IDS[:len(before)]
    assert second.sink.gaps and second.sink.gaps[0].first == before[-1] + 1, second.sink.gaps
    assert second.sink.gaps[0].size > 100  # ~2 s at 10x: trades were really missed
    assert covered and sorted(set(after)) == SPOT_IDS[:len(set(after))]  # no hole from the first id to the last
    assert second.backfiller.failed == []


def test_frames_refused_by_a_full_producer_buffer_are_backfilled(settings):
    """A buffer of 5 records and the whole capture at full speed: many frames are refused; each
    refused frame is a gap (the tracker never advanced past it) and is backfilled from REST."""
    topic = new_topic(settings, "binance")

    async def go():
        async with RunningSimulator(Simulator(load([SPOT]))) as sim:
            running = Running(settings, feed_options(sim, "binance", ["BTCUSDT"], topic, rest_url=sim.url(""),
                                                     max_buffered=5))
            covered = await wait_until(lambda: set(published_ids(settings, topic)) == set(SPOT_IDS), 60)
            return await running.stop(), covered

    handler, covered = asyncio.run(go())
    assert handler.publisher.dropped > 0, "no frame was refused: the test proves nothing"
    ids = published_ids(settings, topic)
    missing = sorted(set(SPOT_IDS) - set(ids))
    assert covered and not missing, f"{len(missing)} trades never published, e.g. {missing[:5]}"
    assert handler.sink.gaps and handler.backfiller.failed == []


def test_frames_whose_delivery_failed_are_backfilled(settings):
    """The raw topic does not exist for the first seconds and records time out after 1 s: their
    delivery reports fail. Each failed record becomes a gap, backfilled once the topic is there."""
    topic = f"test.feed.{uuid.uuid4().hex[:10]}.binance.raw"  # not created yet
    failed_before = metrics.DROPPED.labels("binance", "delivery_error")._value.get()

    async def go():
        async with RunningSimulator(Simulator(load([SPOT]), speed=15.0)) as sim:  # 12 s of trades
            running = Running(settings, feed_options(
                sim, "binance", ["BTCUSDT"], topic, rest_url=sim.url(""), message_timeout_s=1.0,
                producer_config={"allow.auto.create.topics": False, "topic.metadata.refresh.interval.ms": 500,
                                 "topic.metadata.propagation.max.ms": 500}))
            assert await wait_until(lambda: running.handler.publisher is not None
                                    and running.handler.publisher.failed > 20, 30)
            await asyncio.to_thread(lambda: ensure_topics(settings, [topic], partitions=3))
            covered = await wait_until(lambda: set(published_ids(settings, topic)) == set(SPOT_IDS), 60)
            return await running.stop(), covered

    handler, covered = asyncio.run(go())
    assert metrics.DROPPED.labels("binance", "delivery_error")._value.get() > failed_before
    ids = published_ids(settings, topic)
    missing = sorted(set(SPOT_IDS) - set(ids))
    assert covered and not missing, f"{len(missing)} trades never published, e.g. {missing[:5]}"
    assert handler.backfiller.failed == []


def test_an_empty_backfill_page_is_retried_then_counted_as_a_failed_range(settings, caplog):
    """The topic says the feed last published id first-100; REST history starts at the capture's first
    id, so the gap's page is empty for the range: asked again with backoff, then counted and logged."""
    topic = new_topic(settings, "binance")
    first = SPOT_IDS[0]
    seed = capture_frames(SPOT)[0].replace(str(first).encode(), str(first - 100).encode())
    producer = Producer(settings.kafka_client_config())
    producer.produce(topic, seed, b"BTCUSDT", headers=[(headers.RECEIVE_TIME_US, b"1723161300031000"),
                                                       (headers.SOURCE, headers.SOURCE_WS)])
    assert producer.flush(10) == 0
    simulator = Simulator(load([SPOT]))
    ranges_before = metrics.BACKFILL_FAILED_RANGES.labels("binance")._value.get()
    trades_before = metrics.BACKFILL_FAILED_TRADES.labels("binance")._value.get()

    async def go():
        async with RunningSimulator(simulator) as sim:
            running = Running(settings, feed_options(sim, "binance", ["BTCUSDT"], topic, rest_url=sim.url("")))
            await wait_until(lambda: running.handler.backfiller is not None and running.handler.backfiller.failed, 30)
            return await running.stop()

    with caplog.at_level(logging.ERROR, logger="streamapp.feeds.backfill"):
        handler = asyncio.run(go())
    gap = Gap("BTCUSDT", first - 99, first - 1)
    assert handler.sink.gaps == [gap]
    assert handler.backfiller.failed == [gap]
    requests = simulator.m_rest.labels("historicalTrades")._value.get()
    assert requests == handler.backfiller.empty_attempts >= 3  # asked again, then given up
    assert metrics.BACKFILL_FAILED_RANGES.labels("binance")._value.get() == ranges_before + 1
    assert metrics.BACKFILL_FAILED_TRADES.labels("binance")._value.get() == trades_before + 99
    assert any("FAILED range" in r.getMessage() and f"{gap.first}-{gap.last}" in r.getMessage() for r in caplog.records)
    assert published_ids(settings, topic) == sorted([first - 100, *SPOT_IDS])  # nothing else was lost


def test_a_kraken_gap_is_backfilled_end_to_end_from_krakens_trades_endpoint(settings):
    """BTC/USD ids 6-9 are skipped on the WebSocket; the feed pages Kraken's real
    ``GET /0/public/Trades?pair=&since=`` (2 rows a page, paged by ``last``) and the normalizer makes
    exactly the skipped trades of those bodies, with the live trade ids."""
    topic = new_topic(settings, "kraken")
    simulator = Simulator(load([KRAKEN]))
    simulator.faults.request("skip", 2)  # after the first frame (ids 1-5): frames with ids 6-8 and 9

    async def go():
        async with RunningSimulator(simulator) as sim:
            running = Running(settings, feed_options(sim, "kraken", ["BTC/USD"], topic, rest_url=sim.url(""),
                                                     backfill_page_size=2))
            await wait_until(lambda: set(published_ids(settings, topic, "kraken")) == set(range(1, 23)), 30)
            return await running.stop()

    handler = asyncio.run(go())
    assert handler.sink.gaps == [Gap("BTC/USD", 6, 9)]
    records = read_topic(settings, topic)
    backfills = [r for r in records if dict(r.headers())[headers.SOURCE] == headers.SOURCE_BACKFILL]
    assert all(b'"error":[]' in r.value() and b'"last":"' in r.value() for r in backfills)
    filled = normalized("kraken", backfills)
    live = normalized("kraken", [r for r in records if r not in backfills])
    assert [t.trade_seq for t in filled] == [6, 7, 8, 9]
    # The same trades as the live frames give: ids, exact price and quantity, side, time.
    as_live = {t.trade_seq: t for f in capture_frames(KRAKEN) for t in normalize_kraken.normalize(
        f, receive_time_us=0, raw_partition=0, raw_offset=0, symbols=DEFAULT_KRAKEN_MAP,
        now_us=time.time_ns() // 1000, max_skew_us=0) if t.symbol == "BTC/USD"}

    def essence(t):
        return (t.exchange, t.symbol, t.exchange_symbol, t.trade_id, t.trade_seq, t.price, t.quantity, t.side,
                t.trade_time, t.event_time)

    assert [essence(t) for t in filled] == [essence(as_live[i]) for i in (6, 7, 8, 9)]
    assert sorted(t.trade_seq for t in live + filled) == list(range(1, 23))
    assert simulator.m_rest.labels("Trades")._value.get() >= 3  # paged


def test_a_kraken_frame_with_several_symbols_becomes_one_record_per_symbol(settings, tmp_path):
    """One v2 message carrying DASH/EUR and ALGO/BTC trades: each record holds one symbol's trades,
    keyed by it, as the exchange's bytes; per-symbol order holds across records."""
    frames = capture_frames(KRAKEN)
    texts = [f.decode() for f in frames]

    def trade_texts(frame: str) -> list[str]:
        body = frame[frame.index('"data":[') + len('"data":['):-2]
        return ["{" + part.strip("{}") + "}" for part in body.split("},{")]

    dash1, algo1, algo2 = trade_texts(texts[1])[0], trade_texts(texts[2])[0], trade_texts(texts[3])[0]
    dash23 = trade_texts(texts[4])
    mixed = '{"channel":"trade","type":"update","data":[' + ",".join([algo1, dash1, algo2]) + "]}"
    capture = tmp_path / "kraken_mixed.jsonl.gz"
    with gzip.open(capture, "wb") as fh:
        for n, frame in enumerate([mixed, texts[4]]):
            fh.write(orjson.dumps({"receive_time_us": 1617666466000000 + n, "exchange": "kraken", "frame": frame})
                     + b"\n")
    topic = new_topic(settings, "kraken")

    async def go():
        async with RunningSimulator(Simulator(load([capture]))) as sim:
            running = Running(settings, feed_options(sim, "kraken", ["ALGO/BTC", "DASH/EUR"], topic))
            await wait_until(lambda: len(read_topic(settings, topic)) >= 3, 20)
            return await running.stop()

    handler = asyncio.run(go())
    records = read_topic(settings, topic)
    by_key: dict[bytes, list[bytes]] = {}
    for r in records:
        by_key.setdefault(r.key(), []).append(r.value())
    assert sorted(by_key) == [b"ALGO/BTC", b"DASH/EUR"]
    for key, values in by_key.items():
        for value in values:
            assert {t["symbol"] for t in orjson.loads(value)["data"]} == {key.decode()}
    envelope = '{"channel":"trade","type":"update","data":['
    assert by_key[b"ALGO/BTC"] == [(envelope + algo1 + "," + algo2 + "]}").encode()]  # the exchange's bytes per trade
    assert by_key[b"DASH/EUR"] == [(envelope + dash1 + "]}").encode(), texts[4].encode()]
    assert [orjson.loads(t)["trade_id"] for t in dash23] == [2, 3]
    assert handler.sink.gaps == [] and handler.sink.duplicates == 0
