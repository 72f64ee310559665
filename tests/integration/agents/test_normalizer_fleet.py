"""A fleet of normalizer workers sharing the raw partitions; one SIGKILLed mid-stream.

Builds on the single-worker SIGKILL test in test_normalizer.py: here three
`streamapp worker` processes (what `pipeline up --workers 3` starts) share the
raw topics' partitions; one of them is killed while records keep arriving, its
partitions move to the other two, and every raw record is still normalized
exactly once for read_committed readers.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import TimeoutError

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from streamapp import groups, topics
from streamapp.clients.kafka import ensure_topics
from streamapp.pipeline import processes
from tests.integration.kafkautil import end_offsets, read_from
from tests.integration.processes import Process, free_port
from tests.integration.agents.test_normalizer import received_header
from tests.shared_data import shared_data_file

pytestmark = pytest.mark.integration

RAW = topics.raw("binanceusdm")


def assignment(settings, topic: str = RAW) -> dict[int, set[int]]:
    """Worker pid -> the partitions of ``topic`` (a raw topic) it owns now (the client id carries the pid); {} while
    the group is rebalancing (or its coordinator does not answer yet)."""
    admin = AdminClient(settings.kafka_client_config())  # referenced until the answer: its futures die with it
    group = admin.describe_consumer_groups([groups.NORMALIZER], request_timeout=10)
    try:
        description = group[groups.NORMALIZER].result(timeout=15)
    except (KafkaException, TimeoutError):
        return {}
    if description.state.name != "STABLE":
        return {}
    return {int(m.client_id.rsplit("-", 1)[1]): {tp.partition for tp in m.assignment.topic_partitions
                                                 if tp.topic == topic}
            for m in description.members}


def our_lineage(settings, target: str, start: dict[int, int], ours: set) -> list[tuple[int, int]]:
    """The raw (partition, offset) of every committed normalized record past ``start`` that came from ``ours``
    (the shared stack's topics also hold earlier runs' records), sorted, repeats kept."""
    deserialize = AvroDeserializer(SchemaRegistryClient(settings.schema_registry_config()))
    records = (deserialize(m.value(), SerializationContext(target, MessageField.VALUE))
               for m in read_from(settings, target, start, until=10**9, timeout_s=4))
    return sorted(p for p in ((r["raw_partition"], r["raw_offset"]) for r in records) if p in ours)


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"{what} within {timeout_s:.0f}s")


def wait_for_owners(settings, pids: set[int], partitions: list[int], timeout_s: float,
                    topic: str = RAW) -> dict[int, set[int]]:
    """The stable assignment once exactly ``pids`` are the group and each owns partitions of ``topic``,
    all of ``partitions`` between them."""
    deadline = time.monotonic() + timeout_s
    seen: dict[int, set[int]] = {}
    while time.monotonic() < deadline:
        seen = assignment(settings, topic)
        if set(seen) == pids and all(seen.values()) and set().union(*seen.values()) == set(partitions):
            return seen
        time.sleep(1)
    raise AssertionError(f"the group is not workers {sorted(pids)} sharing {partitions} after {timeout_s:.0f}s; "
                         f"last seen: {seen}")


def test_pipeline_starts_distinct_workers_in_one_group():
    from streamapp.settings import Settings

    settings = Settings()
    fleet = [svc for svc in processes(live=False, workers=3) if svc.name.startswith("worker")]
    assert [svc.name for svc in fleet] == ["worker", "worker-2", "worker-3"]
    envs = [svc.env(settings) for svc in fleet]
    assert len({e["STREAMAPP_WORKER_WEB_PORT"] for e in envs}) == 3
    assert len({e["STREAMAPP_WORKER_METRICS_PORT"] for e in envs}) == 3
    assert [svc.host_port(settings)[1] for svc in fleet] == [int(e["STREAMAPP_WORKER_METRICS_PORT"]) for e in envs]


@pytest.mark.timeout(480)
def test_a_fleet_worker_killed_mid_stream_hands_over_and_each_record_is_normalized_once(stack, tmp_path):
    settings = stack
    ensure_topics(settings, topics.PIPELINE_TOPICS)
    # Futures trades only (as in test_normalizer.py): Silver keeps each trade once, so the
    # official-kline comparison in test_pipeline.py is unaffected.
    frames = shared_data_file("binance", "binance_usdm_ws_trades_BTCUSDT_2024-08-08T2355_2357.jsonl").read_bytes()
    frames = frames.splitlines() * 2
    target = topics.normalized("binanceusdm")
    start = end_offsets(settings, target)
    partitions = sorted(end_offsets(settings, RAW))

    # A 10 s session timeout instead of Faust's 60 s: the killed worker's partitions move while the feed still runs.
    workers = [Process(["worker"], tmp_path / f"worker-{i}.log", env={
        "STREAMAPP_WORKER_WEB_PORT": str(free_port()), "STREAMAPP_WORKER_METRICS_PORT": str(free_port()),
        "STREAMAPP_WORKER_SESSION_TIMEOUT_S": "10"})
        for i in range(3)]
    by_pid = {w.proc.pid: w for w in workers}
    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True, "linger.ms": 5})
    positions: list = []
    failed: list = []

    def produce_at_about(rate: int, first: int, last: int) -> None:
        """Frames ``first`` to ``last``, round-robin over the raw partitions, at about ``rate`` per second."""
        now = time.time_ns() // 1000
        for i, frame in zip(range(first, last), frames[first:last]):
            producer.produce(RAW, frame, b"BTCUSDT", partition=partitions[i % len(partitions)],
                             headers=received_header(now + i),
                             on_delivery=lambda err, msg: failed.append(err) if err else
                             positions.append((msg.partition(), msg.offset())))
            producer.poll(0)
            if i % 100 == 99:
                time.sleep(100 / rate)
        producer.flush(60)

    warm_up = 300
    feeder = threading.Thread(target=produce_at_about, args=(1000, warm_up, len(frames)))
    try:
        owners = wait_for_owners(settings, set(by_pid), partitions, 180)
        # Every worker busy first (their first batch waits for schema registration and transactions).
        produce_at_about(10**6, 0, warm_up)
        assert len(read_from(settings, target, start, until=warm_up, timeout_s=120)) >= warm_up
        feeder.start()
        wait_for(lambda: len(positions) >= warm_up + 3000, 60, "3,000 more raw records produced")
        victim_pid = max(owners, key=lambda pid: len(owners[pid]))
        by_pid[victim_pid].kill()
        killed = time.monotonic()
        produced_at_kill = len(positions)
        assert produced_at_kill < len(frames), "the kill must land mid-stream (the feed was still producing)"

        survivors = set(by_pid) - {victim_pid}
        after = wait_for_owners(settings, survivors, partitions, 150)
        handover_s = time.monotonic() - killed
        feeder.join(120)
        assert not failed and len(positions) == len(frames), failed
        ours = set(positions)
        deadline = time.monotonic() + 240
        while not ours <= set(lineage := our_lineage(settings, target, start, ours)) and time.monotonic() < deadline:
            time.sleep(2)
        time.sleep(5)  # and a little longer: a duplicate would show up now
        lineage = our_lineage(settings, target, start, ours)
        for pid in survivors:
            assert by_pid[pid].proc.poll() is None, f"worker {pid} died:\n" + by_pid[pid].why_it_died()
    finally:
        for worker in workers:
            worker.stop()
    assert lineage == sorted(positions), (
        f"{len(lineage)} normalized records ({len(set(lineage))} distinct) for {len(positions)} raw records; "
        f"victim owned {sorted(owners[victim_pid])}, survivors {after} after {handover_s:.0f}s"
    )
    print(f"handover after SIGKILL: {handover_s:.1f}s; victim owned raw partitions {sorted(owners[victim_pid])}; "
          f"{produced_at_kill} of {len(frames)} raw records produced at the kill")
