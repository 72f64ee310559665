"""Every long-running process serves /metrics, and its counters move while data flows.

The worker reads raw frames produced here (to every partition of the Binance raw topic, with
the feed's headers); the feed handler reads the simulator, which injects gaps and dropped
connections so the reconnect, gap and backfill counters move too. Each process is a child
with its own ports, bounded in time and killed at the end.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from streamapp import headers as raw_headers
from streamapp import topics
from streamapp.clients.kafka import admin, ensure_topics
from tests.integration.processes import Process, free_port

pytestmark = pytest.mark.integration

CAPTURE = Path(__file__).resolve().parents[2] / "streamapp" / "captures" / "binance_spot_btcusdt_trades_2024-08-08.jsonl.gz"
TRADE_TIME_MS = 1546300800000  # 2019-01-01 00:00 UTC: a window no other test writes for BTC/USDT

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """All samples on ``http://127.0.0.1:<port>/metrics``, by (name, sorted labels)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of ``name`` over the samples whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, processes: list[Process]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in processes:
            assert process.proc.poll() is None, f"{process.log.name} exited:\n{process.output()[-3000:]}"
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(0.5)
    logs = "\n".join(f"--- {p.log.name}\n{p.output()[-2000:]}" for p in processes)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{logs}")


class RawFrames:
    """Binance trade frames with fresh trade ids (2019 trade times), one per raw partition per batch,
    plus one truncated frame the normalizer rejects."""

    def __init__(self, settings) -> None:
        self.producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True, "linger.ms": 5})
        topic = topics.raw("binance")
        self.topic = topic
        self.partitions = sorted(self.producer.list_topics(topic, timeout=10).topics[topic].partitions)
        self.next_id = 9 * 10**15 + (uuid.uuid4().int % 10**9) * 1000

    def _headers(self) -> list[tuple[str, bytes]]:
        return [(raw_headers.RECEIVE_TIME_US, str(time.time_ns() // 1000).encode()),
                (raw_headers.CONNECTION_ID, b"ops-metrics-test"), (raw_headers.SOURCE, raw_headers.SOURCE_WS)]

    def send_batch(self) -> None:
        for partition in self.partitions:
            self.next_id += 1
            at = TRADE_TIME_MS + self.next_id % 10**6
            frame = {"stream": "btcusdt@trade", "data": {"e": "trade", "E": at, "T": at, "s": "BTCUSDT",
                                                          "t": self.next_id, "p": "3700.5", "q": "0.01", "m": False}}
            self.producer.produce(self.topic, orjson.dumps(frame), b"BTCUSDT", partition=partition,
                                  headers=self._headers())
        self.producer.produce(self.topic, b'{"stream":"btcusdt@trade","data":{"e":"tr', b"BTCUSDT",
                              partition=self.partitions[0], headers=self._headers())
        assert self.producer.flush(30) == 0


WORKER_COUNTERS = [
    ("streamapp_normalizer_frames_total", {"exchange": "binance", "outcome": "trades"}),
    ("streamapp_normalizer_frames_total", {"exchange": "binance", "outcome": "rejected"}),
    ("streamapp_normalizer_trades_total", {"exchange": "binance"}),
    ("streamapp_normalizer_rejected_total", {"exchange": "binance", "reason": "malformed_json"}),
    ("streamapp_receive_to_publish_seconds_count", {"exchange": "binance"}),
    ("streamapp_normalize_seconds_count", {"exchange": "binance"}),
]


@pytest.mark.timeout(240)
def test_worker_metrics_move_while_raw_frames_flow(stack, tmp_path):
    ensure_topics(stack, topics.PIPELINE_TOPICS)
    port = free_port()
    worker = Process(["worker"], tmp_path / "worker.log", env={
        "STREAMAPP_WORKER_WEB_PORT": str(free_port()), "STREAMAPP_WORKER_METRICS_PORT": str(port)})
    frames = RawFrames(stack)
    try:
        def flowing() -> bool:
            frames.send_batch()
            samples = scrape(port)
            return all(total(samples, name, **labels) > 0 for name, labels in WORKER_COUNTERS)

        # Until this worker has a share of the group's partitions and has normalized some of our frames.
        wait_for(flowing, 150, "the worker's normalizer counters to count our frames", [worker])
        first = scrape(port)
        for _ in range(3):
            frames.send_batch()

        def moved() -> bool:
            now = scrape(port)
            return all(total(now, n, **ls) > total(first, n, **ls) for n, ls in WORKER_COUNTERS)

        wait_for(moved, 60, "every normalizer counter to move between two scrapes", [worker])
        wait_for(lambda: any(n == "streamapp_normalizer_consumer_lag" for n, _ in scrape(port)), 15,
                 "the consumer lag gauge (set every 5 s per assigned raw partition)", [worker])
        assert total(scrape(port), "process_cpu_seconds_total") > 0  # the default collectors are served too
    finally:
        worker.stop()


FEED_COUNTERS = [
    ("streamapp_feed_frames_received_total", {"exchange": "binance", "kind": "trade"}),
    ("streamapp_feed_frames_published_total", {"exchange": "binance"}),
    ("streamapp_feed_publish_latency_seconds_count", {"exchange": "binance"}),
]


@pytest.mark.timeout(240)
def test_feed_and_simulator_metrics_move_while_trades_flow(stack, tmp_path):
    sim_port, feed_port = free_port(), free_port()
    topic = f"ops-metrics-test-{uuid.uuid4().hex[:8]}.binance.raw"  # no other test reads it
    # At 5x the recording's pace (~350 trades/s); a gap every 200 trades, a dropped connection every 1500.
    simulator = Process(["exchange", "serve", "--capture", str(CAPTURE), "--speed", "5", "--port", str(sim_port),
                         "--skip-every", "200", "--drop-every", "1500"], tmp_path / "simulator.log")
    processes = [simulator]
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{sim_port}/health", timeout=2).status_code == 200, 30,
                 "the simulator", processes)
        feed = Process(["feed", "run", "--exchange", "binance", "--symbols", "BTCUSDT", "--topic", topic,
                        "--url", f"ws://127.0.0.1:{sim_port}/stream", "--backfill-url", f"http://127.0.0.1:{sim_port}",
                        "--metrics-port", str(feed_port)], tmp_path / "feed.log")
        processes.append(feed)
        wait_for(lambda: all(total(scrape(feed_port), n, **ls) > 0 for n, ls in FEED_COUNTERS), 60,
                 "the feed's first published frames", processes)
        first, sim_first = scrape(feed_port), scrape(sim_port)
        wait_for(lambda: all(total(scrape(feed_port), n, **ls) > total(first, n, **ls) for n, ls in FEED_COUNTERS),
                 30, "the feed's counters to move between two scrapes", processes)
        assert total(scrape(sim_port), "streamapp_simulator_frames_sent_total") > \
            total(sim_first, "streamapp_simulator_frames_sent_total")
        # The injected faults show up as gaps (backfilled from the simulator's REST) and reconnects.
        wait_for(lambda: all(total(scrape(feed_port), n, exchange="binance") > 0 for n in (
            "streamapp_feed_gaps_total", "streamapp_feed_gap_trades_total", "streamapp_feed_backfilled_trades_total",
            "streamapp_feed_reconnects_total")), 90, "gap, backfill and reconnect counters", processes)
        last = scrape(feed_port)
        assert total(last, "streamapp_feed_connections", exchange="binance") >= 0
        assert total(scrape(sim_port), "streamapp_simulator_faults_total") > 0
    finally:
        for process in reversed(processes):
            process.stop()
        client = admin(stack)  # kept alive until the deletion is done
        for future in client.delete_topics([topic], operation_timeout=10).values():
            future.result(15)
