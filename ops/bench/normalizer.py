"""Benchmark: the Faust normalizer worker against a plain confluent-kafka loop doing the same work.

Both read the same raw Binance frames, call the same Dispatcher (normalize +
Avro encode), and produce the results. The worker runs as `streamapp worker`
(exactly-once, transactions); the plain loop is at-least-once with one
producer, the simplest thing that does the job. Reported as records/s and as
the ratio of the two, measured in the same run (machines here are noisy).

    python ops/bench/normalizer.py --records 50000     # against $STREAMAPP_* (the local stack)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from itertools import cycle, islice
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from streamapp import topics  # noqa: E402
from streamapp.clients.kafka import ensure_topics  # noqa: E402
from streamapp.clients.registry import register_trade_schema  # noqa: E402
from streamapp.codecs.avro import TradeAvroCodec  # noqa: E402
from streamapp.dispatch import Dispatcher  # noqa: E402
from streamapp.feeds import headers  # noqa: E402
from streamapp.normalize import binance  # noqa: E402
from streamapp.normalize.symbols import SymbolMap  # noqa: E402
from streamapp.settings import get_settings  # noqa: E402

CAPTURE = REPO / "tests" / "fixtures" / "binance_usdm_trades.jsonl"


def end_offsets(settings, topic):
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"bench-{uuid.uuid4().hex}"})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    consumer.close()
    return ends


def produce_raw(settings, frames: list[bytes]) -> dict[int, int]:
    start = end_offsets(settings, topics.raw("binance"))
    producer = Producer({**settings.kafka_client_config(), "linger.ms": 20, "compression.type": "lz4"})
    now = str(time.time_ns() // 1000).encode()
    for frame in frames:
        while True:
            try:
                producer.produce(topics.raw("binance"), frame, b"BTCUSDT", headers=[(headers.RECEIVE_TIME_US, now)])
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(60)
    return start


def bench_worker(settings, n: int, start_normalized: dict[int, int]) -> float:
    env = {**os.environ, "STREAMAPP_WORKER_WEB_PORT": "16066", "STREAMAPP_WORKER_METRICS_PORT": "19102"}
    worker = subprocess.Popen([sys.executable, "-m", "streamapp.cli", "worker", "-l", "warning"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        first = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            ends = end_offsets(settings, topics.normalized("binance"))
            # end offsets include transaction markers: good enough to time a large batch
            done = sum(ends[p] - start_normalized.get(p, 0) for p in ends)
            if done and first is None:
                first = time.monotonic()
            if done >= n:
                return n / (time.monotonic() - first)
            time.sleep(0.05)
        raise SystemExit("worker did not finish")
    finally:
        worker.terminate()
        worker.wait(30)


def bench_plain_loop(settings, n: int, start_raw: dict[int, int]) -> float:
    schema_id = asyncio.run(register_trade_schema(settings, topics.normalized("binance")))
    dispatcher = Dispatcher("binance", binance.normalize, SymbolMap.binance(), TradeAvroCodec(schema_id),
                            backfill=binance.normalize_backfill, max_skew_s=settings.clock_skew_s)
    target = f"bench.normalized.{uuid.uuid4().hex[:6]}"
    ensure_topics(settings, [target])
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"bench-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topics.raw("binance"), p, o) for p, o in start_raw.items()])
    producer = Producer({**settings.kafka_client_config(), "linger.ms": 5, "enable.idempotence": True})
    seen = 0
    began = time.monotonic()
    while seen < n:
        for msg in consumer.consume(1000, 1.0):
            if msg.error():
                continue
            seen += 1
            for out in dispatcher.dispatch(msg.value(), msg.key(), msg.headers(), msg.partition(), msg.offset()):
                while True:
                    try:
                        producer.produce(target, out.value, out.key, headers=out.headers)
                        break
                    except BufferError:
                        producer.poll(0.1)
            producer.poll(0)
        consumer.commit(asynchronous=True)
    producer.flush(60)
    elapsed = time.monotonic() - began
    consumer.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    args = parser.parse_args()
    settings = get_settings()
    ensure_topics(settings, topics.PIPELINE_TOPICS)
    frames = list(islice(cycle(CAPTURE.read_bytes().splitlines()), args.records))
    start_raw = produce_raw(settings, frames)
    start_normalized = end_offsets(settings, topics.normalized("binance"))
    plain = bench_plain_loop(settings, args.records, start_raw)
    faust = bench_worker(settings, args.records, start_normalized)
    print(f"records: {args.records}")
    print(f"plain confluent-kafka loop: {plain:,.0f} records/s")
    print(f"streamapp worker (Faust, exactly-once): {faust:,.0f} records/s")
    print(f"ratio worker/plain: {faust / plain:.2f}")


if __name__ == "__main__":
    main()
