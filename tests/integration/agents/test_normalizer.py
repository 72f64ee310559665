"""The normalizer worker on the real broker and registry: raw frames in, Avro Trades or DLQ out."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from streamapp import headers as raw_headers
from streamapp import topics
from streamapp.clients.kafka import ensure_topics
from streamapp.dispatch import ERROR_CODE, SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC
from tests.integration.kafkautil import end_offsets, read_from
from tests.integration.processes import Process, free_port
from tests.shared_data import shared_data_file

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
BINANCE_FRAMES = (FIXTURES / "binance_usdm_trades.jsonl").read_bytes().splitlines()
KRAKEN_FRAMES = [line for line in (FIXTURES / "kraken_v2_docs.jsonl").read_bytes().splitlines()
                 if orjson.loads(line).get("channel") == "trade" and orjson.loads(line).get("data")]


def _utc(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, timezone.utc).replace(microsecond=us % 1_000_000)


def _rfc3339_us(text: str) -> int:
    parsed = datetime.strptime(text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
    return int(parsed.timestamp()) * 1_000_000 + parsed.microsecond


def expected_binance(frame: bytes, received: int, partition: int, offset: int) -> dict:
    """What the normalized record must hold, computed here from the frame independently."""
    data = orjson.loads(frame)["data"]
    return {
        "exchange": "binanceusdm", "symbol": "BTC/USDT", "exchange_symbol": data["s"], "trade_id": str(data["t"]),
        "trade_seq": data["t"], "price": Decimal(data["p"]), "quantity": Decimal(data["q"]),
        "side": "sell" if data["m"] else "buy", "trade_time": _utc(data["T"] * 1000),
        "event_time": _utc(data["E"] * 1000), "receive_time": _utc(received),
        "raw_partition": partition, "raw_offset": offset,
    }


def expected_kraken(frame: bytes, received: int, partition: int, offset: int) -> list[dict]:
    import json

    return [{
        "exchange": "kraken", "symbol": t["symbol"], "exchange_symbol": t["symbol"], "trade_id": str(t["trade_id"]),
        "trade_seq": t["trade_id"], "price": t["price"], "quantity": t["qty"], "side": t["side"],
        "trade_time": _utc(_rfc3339_us(t["timestamp"])), "event_time": _utc(_rfc3339_us(t["timestamp"])),
        "receive_time": _utc(received), "raw_partition": partition, "raw_offset": offset,
    } for t in json.loads(frame, parse_float=Decimal)["data"]]


def produce(settings, topic: str, frames: list[tuple[bytes, bytes, list]]) -> list[tuple[int, int]]:
    """Produce (key, value, headers) in order; return each record's (partition, offset)."""
    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True, "linger.ms": 5})
    positions: list = [None] * len(frames)

    def delivered(index):
        def callback(err, msg):
            assert err is None, err
            positions[index] = (msg.partition(), msg.offset())
        return callback

    for index, (key, value, headers) in enumerate(frames):
        producer.produce(topic, value, key, headers=headers, on_delivery=delivered(index))
        producer.poll(0)
    assert producer.flush(30) == 0
    return positions


@pytest.fixture(scope="module")
def pipeline_topics(stack):
    ensure_topics(stack, topics.PIPELINE_TOPICS)
    return stack


def start_worker(tmp_path: Path, name: str) -> Process:
    return Process(["worker"], tmp_path / f"{name}.log", env={
        "STREAMAPP_WORKER_WEB_PORT": str(free_port()), "STREAMAPP_WORKER_METRICS_PORT": str(free_port()),
    })


def received_header(us: int) -> list[tuple[str, bytes]]:
    return [(raw_headers.RECEIVE_TIME_US, str(us).encode()), (raw_headers.CONNECTION_ID, b"test")]


@pytest.mark.timeout(180)
def test_raw_frames_become_avro_trades_and_bad_frames_go_to_the_dlq(pipeline_topics, tmp_path):
    settings = pipeline_topics
    now = time.time_ns() // 1000
    starts = {t: end_offsets(settings, t) for t in
              (topics.normalized("binanceusdm"), topics.normalized("kraken"), topics.DLQ)}

    binance_positions = produce(settings, topics.raw("binanceusdm"),
                                [(b"BTCUSDT", frame, received_header(now + i)) for i, frame in enumerate(BINANCE_FRAMES)])
    kraken_positions = produce(settings, topics.raw("kraken"),
                               [(b"BTC/USD", frame, received_header(now)) for frame in KRAKEN_FRAMES])
    bad = [
        (b"BTCUSDT", b'{"stream":"btcusdt@trade","data":{"e":"trade"', received_header(now), "malformed_json"),
        (b"DOGEBTC", BINANCE_FRAMES[0].replace(b"BTCUSDT", b"NOPEBTC"), received_header(now), "unknown_symbol"),
        (b"BTCUSDT", BINANCE_FRAMES[0].replace(b'"p":"61807.70"', b'"p":"0"'), received_header(now), "bad_price"),
        (b"BTCUSDT", BINANCE_FRAMES[0].replace(b'"q":"0.002",', b""), received_header(now), "missing_field"),
        (b"BTCUSDT", BINANCE_FRAMES[0], [(raw_headers.RECEIVE_TIME_US, b"soon")], "missing_field"),  # broken header
    ]
    bad_positions = produce(settings, topics.raw("binanceusdm"), [(k, v, h) for k, v, h, _ in bad])

    worker = start_worker(tmp_path, "worker")
    try:
        kraken_expected = [e for frame, (p, o) in zip(KRAKEN_FRAMES, kraken_positions)
                           for e in expected_kraken(frame, now, p, o)]
        got_binance = read_from(settings, topics.normalized("binanceusdm"), starts[topics.normalized("binanceusdm")],
                                until=len(BINANCE_FRAMES), timeout_s=90)
        got_kraken = read_from(settings, topics.normalized("kraken"), starts[topics.normalized("kraken")],
                               until=len(kraken_expected), timeout_s=30)
        got_dlq = read_from(settings, topics.DLQ, starts[topics.DLQ], timeout_s=30,
                            until=lambda records: set(bad_positions) <= set(map(dlq_origin, records)))
    finally:
        worker.stop()

    deserialize = AvroDeserializer(SchemaRegistryClient(settings.schema_registry_config()))

    def decoded(msg):
        return deserialize(msg.value(), SerializationContext(msg.topic(), MessageField.VALUE))

    # Only records from the raw records produced here (an earlier failed run may have left others).
    ours = set(binance_positions)
    got_binance = [m for m in got_binance if (decoded(m)["raw_partition"], decoded(m)["raw_offset"]) in ours]
    assert [decoded(m) for m in got_binance] == [
        expected_binance(frame, now + i, p, o) for i, (frame, (p, o)) in enumerate(zip(BINANCE_FRAMES, binance_positions))
    ], worker.output()[-3000:]
    assert {m.key() for m in got_binance} == {b"BTC/USDT"}
    ours = set(kraken_positions)
    by_id = sorted((r for r in map(decoded, got_kraken) if (r["raw_partition"], r["raw_offset"]) in ours),
                   key=lambda r: r["trade_id"])
    assert by_id == sorted(kraken_expected, key=lambda r: r["trade_id"])
    assert {m.key().decode() for m in got_kraken} == {e["symbol"] for e in kraken_expected}

    # Only the DLQ records of the raw records produced here: other tests' rejects share the DLQ.
    by_origin = {dlq_origin(m): m for m in got_dlq}
    assert set(by_origin) >= set(bad_positions)
    for (key, value, _, code), (partition, offset) in zip(bad, bad_positions):
        msg = by_origin[(partition, offset)]
        headers = dict(msg.headers())
        assert (msg.key(), msg.value()) == (key, value)  # unchanged
        assert headers[ERROR_CODE] == code.encode()
        assert headers[SOURCE_TOPIC] == topics.raw("binanceusdm").encode()
        assert headers[SOURCE_PARTITION] == str(partition).encode()


def dlq_origin(msg) -> tuple[int, int] | None:
    """(partition, offset) of the binanceusdm raw record a DLQ record came from; None for another topic's."""
    headers = dict(msg.headers() or [])
    if headers.get(SOURCE_TOPIC) != topics.raw("binanceusdm").encode():
        return None
    return int(headers[SOURCE_PARTITION]), int(headers[SOURCE_OFFSET])


def scrape(port: int, sample: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(sample + " "):
                return float(line.split()[1])
    return None


@pytest.mark.timeout(180)
def test_a_raw_record_from_another_producer_is_normalized_with_its_kafka_timestamp_as_receive_time(
        pipeline_topics, tmp_path):
    """kcat, Kafka Connect & co. write no streamapp headers: a plain confluent-kafka producer here."""
    settings = pipeline_topics
    target = topics.normalized("binanceusdm")
    start = end_offsets(settings, target)
    stamp_ms = time.time_ns() // 1_000_000 - 60_000
    producer = Producer(settings.kafka_client_config())
    positions: list = []
    for i, frame in enumerate(BINANCE_FRAMES):
        producer.produce(topics.raw("binanceusdm"), frame, b"BTCUSDT", timestamp=stamp_ms + i,
                         on_delivery=lambda err, msg: positions.append((msg.partition(), msg.offset(), msg.timestamp())))
    assert producer.flush(30) == 0
    assert all(ts == (1, stamp_ms + i) for i, (_, _, ts) in enumerate(sorted(positions, key=lambda p: p[2][1])))

    metrics_port = free_port()
    worker = Process(["worker"], tmp_path / "worker.log", env={
        "STREAMAPP_WORKER_WEB_PORT": str(free_port()), "STREAMAPP_WORKER_METRICS_PORT": str(metrics_port)})
    try:
        got = read_from(settings, target, start, until=len(BINANCE_FRAMES), timeout_s=120)
        counted = scrape(metrics_port, 'streamapp_normalizer_no_receive_header_total{exchange="binanceusdm"}')
    finally:
        worker.stop()
    deserialize = AvroDeserializer(SchemaRegistryClient(settings.schema_registry_config()))
    stamps = {(p, o): ts for p, o, (_, ts) in positions}
    records = [r for r in (deserialize(m.value(), SerializationContext(target, MessageField.VALUE)) for m in got)
               if (r["raw_partition"], r["raw_offset"]) in stamps]
    assert len(records) == len(BINANCE_FRAMES), worker.output()[-3000:]
    for r in records:
        assert r["receive_time"] == _utc(stamps[(r["raw_partition"], r["raw_offset"])] * 1000)
    assert counted is not None and counted >= len(BINANCE_FRAMES)


@pytest.mark.timeout(300)
def test_a_worker_killed_mid_stream_and_restarted_yields_each_trade_once(pipeline_topics, tmp_path):
    settings = pipeline_topics
    # The futures recording, twice: enough records to kill the worker mid-stream. Only futures
    # trades go through the pipeline's BTC/USDT in any test, so the warehouse's candles for
    # that window stay comparable with the official futures klines (tests/integration/test_pipeline.py).
    frames = shared_data_file("binance", "binance_usdm_ws_trades_BTCUSDT_2024-08-08T2355_2357.jsonl").read_bytes()
    frames = frames.splitlines() * 2
    target = topics.normalized("binanceusdm")
    start = end_offsets(settings, target)
    now = time.time_ns() // 1000
    positions = produce(settings, topics.raw("binanceusdm"), [(b"BTCUSDT", f, received_header(now)) for f in frames])

    first = start_worker(tmp_path, "first")
    try:
        deadline = time.monotonic() + 120
        seen = 0
        while seen < 500 and time.monotonic() < deadline:
            seen = len(read_from(settings, target, start, until=500, timeout_s=1, isolation="read_uncommitted"))
        first.kill()
    finally:
        first.stop()
    committed_at_kill = len(read_from(settings, target, start, until=len(frames), timeout_s=5))
    assert 0 < seen and committed_at_kill < len(frames), "the kill must land mid-stream"

    second = start_worker(tmp_path, "second")
    try:
        read_from(settings, target, start, until=len(frames), timeout_s=150)
        # Read everything again, waiting a little for anything beyond (a duplicate would show up here).
        got = read_from(settings, target, start, until=10**9, timeout_s=8)
    finally:
        second.stop()
    deserialize = AvroDeserializer(SchemaRegistryClient(settings.schema_registry_config()))
    records = [deserialize(m.value(), SerializationContext(target, MessageField.VALUE)) for m in got]
    ours = set(positions)
    lineage = sorted((r["raw_partition"], r["raw_offset"]) for r in records if (r["raw_partition"], r["raw_offset"]) in ours)
    assert lineage == sorted(positions), (
        f"{len(records)} normalized records for {len(frames)} raw frames; "
        f"{len(set(lineage))} distinct; committed at kill: {committed_at_kill}"
    )


@pytest.mark.timeout(240)
def test_the_worker_rides_out_a_broker_restart_and_normalizes_each_record_once(stack, broker, tmp_path):
    """A private broker (the shared one must stay up) is stopped mid-stream for 8 s and started again."""
    import threading

    private = broker.settings
    ensure_topics(private, topics.PIPELINE_TOPICS)
    frames = BINANCE_FRAMES * 2000  # 10,000 raw records, produced at about 1,000/s
    worker = Process(["worker"], tmp_path / "worker.log", env={
        "STREAMAPP_KAFKA_BOOTSTRAP_SERVERS": private.kafka_bootstrap_servers,
        "STREAMAPP_WORKER_WEB_PORT": str(free_port()), "STREAMAPP_WORKER_METRICS_PORT": str(free_port()),
    })
    producer = Producer({**private.kafka_client_config(), "enable.idempotence": True, "acks": "all",
                         "linger.ms": 5, "message.timeout.ms": 120_000})
    positions: list = []

    def produce_slowly(batch: list[bytes]) -> None:
        for frame in batch:
            producer.produce(topics.raw("binanceusdm"), frame, b"BTCUSDT", headers=received_header(time.time_ns() // 1000),
                             on_delivery=lambda err, msg: positions.append((msg.partition(), msg.offset()))
                             if err is None else None)
            producer.poll(0)
            time.sleep(0.001)

    outage = threading.Thread(target=lambda: (broker.stop(), time.sleep(8), broker.start()))
    try:
        produce_slowly(frames[:1000])
        # The worker is normalizing: now take the broker away while records keep coming.
        assert read_from(private, topics.normalized("binanceusdm"), {p: 0 for p in range(private.topic_partitions)},
                         until=1, timeout_s=60), "the worker produced nothing before the outage"
        outage.start()
        produce_slowly(frames[1000:])
        outage.join()
        assert producer.flush(120) == 0
        assert len(positions) == len(frames), "the producer lost records across the restart"
        got = read_from(private, topics.normalized("binanceusdm"), {p: 0 for p in range(private.topic_partitions)},
                        until=len(frames), timeout_s=120)
        assert worker.proc.poll() is None, "the worker died:\n" + worker.why_it_died()
    finally:
        worker.stop()
    deserialize = AvroDeserializer(SchemaRegistryClient(stack.schema_registry_config()))
    lineage = sorted((r["raw_partition"], r["raw_offset"]) for r in
                     (deserialize(m.value(), SerializationContext(m.topic(), MessageField.VALUE)) for m in got))
    assert lineage == sorted(positions)


@pytest.mark.timeout(240)
def test_a_worker_started_while_the_registry_is_down_waits_for_it_and_loses_nothing(pipeline_topics, tmp_path):
    """The registry down when a worker starts (a whole stack restarting, say): the worker stays up, retries
    the schema registration, normalizes nothing meanwhile, and once a registry answers (here a second
    instance of the local one, on the same `_schemas` topic) each raw record once, none into the DLQ."""
    settings = pipeline_topics
    frames = shared_data_file("binance", "binance_usdm_ws_trades_BTCUSDT_2024-08-08T2355_2357.jsonl").read_bytes()
    frames = frames.splitlines()[:300]
    target = topics.normalized("binanceusdm")
    start, dlq_start = end_offsets(settings, target), end_offsets(settings, topics.DLQ)
    now = time.time_ns() // 1000
    positions = produce(settings, topics.raw("binanceusdm"), [(b"BTCUSDT", f, received_header(now)) for f in frames])
    url = f"http://127.0.0.1:{free_port()}"
    worker = Process(["worker"], tmp_path / "worker.log", env={
        "STREAMAPP_WORKER_WEB_PORT": str(free_port()), "STREAMAPP_WORKER_METRICS_PORT": str(free_port()),
        "STREAMAPP_SCHEMA_REGISTRY_URL": url})
    registry = None
    try:
        deadline = time.monotonic() + 90
        while "cannot reach the schema registry" not in worker.output() or "retrying in 2 s" not in worker.output():
            assert worker.proc.poll() is None, "the worker died:\n" + worker.why_it_died()
            assert time.monotonic() < deadline, "the worker never reported the registry down:\n" + worker.output()[-3000:]
            time.sleep(0.5)
        assert read_from(settings, target, start, until=1, timeout_s=3, isolation="read_uncommitted") == []
        registry = subprocess.Popen([sys.executable, "-m", "streamapp.stack.registry"],
                                    env={**os.environ, "STREAMAPP_SCHEMA_REGISTRY_URL": url},
                                    stdout=(tmp_path / "registry.log").open("wb"), stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        read_from(settings, target, start, until=len(frames), timeout_s=150)
        got = read_from(settings, target, start, until=10**9, timeout_s=6)  # a duplicate would show up now
        got_dlq = read_from(settings, topics.DLQ, dlq_start, until=10**9, timeout_s=3)
        assert worker.proc.poll() is None, "the worker died:\n" + worker.why_it_died()
    finally:
        worker.stop()
        if registry is not None:
            registry.terminate()
            registry.wait(30)
    deserialize = AvroDeserializer(SchemaRegistryClient(settings.schema_registry_config()))
    records = [deserialize(m.value(), SerializationContext(target, MessageField.VALUE)) for m in got]
    ours = set(positions)
    lineage = sorted(p for p in ((r["raw_partition"], r["raw_offset"]) for r in records) if p in ours)
    assert lineage == sorted(positions), f"{len(lineage)} normalized ({len(set(lineage))} distinct) for {len(positions)}"
    assert not ours & {dlq_origin(m) for m in got_dlq}
