"""The raw layer: the raw topics' records (key, value bytes, headers, position, timestamp) by hour.

Hours are hours of the Kafka record timestamp (the feed's produce time, right after receipt).
An hour's records are found with ``offsets_for_times`` (first offset at or after the hour's
start, and after its end, per partition), so counting an hour costs no reads. The topics'
retention plays the hot tier's TTL here (``STREAMAPP_RAW_RETENTION_MS``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
from confluent_kafka import Consumer, KafkaException, TopicPartition
from pyiceberg.catalog import Catalog

from streamapp import topics
from streamapp.coldtier import catalog, schemas
from streamapp.coldtier.offload import (
    HOUR_PROPERTY,
    RAW,
    HourResult,
    in_window,
    read_log,
    replace_hour,
    write_log,
)
from streamapp.coldtier.plan import HOUR, HourStat, Plan, hour_of, plan
from streamapp.errors import StreamappError
from streamapp.exchanges import EXCHANGES
from streamapp.settings import Settings

TIMEOUT_S = 10.0


def _consumer(settings: Settings) -> Consumer:
    return Consumer(settings.kafka_client_config() | {
        "group.id": "streamapp-offload", "enable.auto.commit": False, "isolation.level": "read_committed",
        "socket.timeout.ms": int(TIMEOUT_S * 1000), "log_level": 0})


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    meta = consumer.list_topics(topic, timeout=TIMEOUT_S).topics.get(topic)
    if meta is None or meta.error is not None:
        return []
    return sorted(meta.partitions)


def _offsets_at(consumer: Consumer, topic: str, partitions: list[int], t: datetime) -> dict[int, int]:
    """First offset at or after ``t`` per partition (the end offset where there is none)."""
    ms = int(t.timestamp() * 1000)
    found = consumer.offsets_for_times([TopicPartition(topic, p, ms) for p in partitions], timeout=TIMEOUT_S)
    result = {}
    for tp in found:
        if tp.offset < 0:  # no record at or after t
            result[tp.partition] = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition),
                                                                  timeout=TIMEOUT_S)[1]
        else:
            result[tp.partition] = tp.offset
    return result


def _first_time(consumer: Consumer, topic: str, partitions: list[int]) -> datetime | None:
    """Timestamp of the oldest retained record of ``topic``."""
    found = consumer.offsets_for_times([TopicPartition(topic, p, 0) for p in partitions], timeout=TIMEOUT_S)
    starts = [TopicPartition(topic, tp.partition, tp.offset) for tp in found if tp.offset >= 0]
    if not starts:
        return None
    consumer.assign(starts)
    oldest = None
    for msg in _drain(consumer, {tp.partition: tp.offset + 1 for tp in starts}, topic):
        ts = msg.timestamp()[1]
        oldest = ts if oldest is None else min(oldest, ts)
    consumer.unassign()
    return None if oldest is None else datetime.fromtimestamp(oldest / 1000, timezone.utc)


def _drain(consumer: Consumer, ends: dict[int, int], topic: str):
    """Messages of the assigned partitions until each reaches its end offset (exclusive)."""
    import time

    remaining = {p for p, end in ends.items()}
    deadline = time.monotonic() + 120
    positions = {tp.partition: tp.offset for tp in consumer.position(
        [TopicPartition(topic, p) for p in remaining])}
    remaining = {p for p in remaining if positions.get(p, 0) < ends[p]}
    while remaining:
        if time.monotonic() > deadline:
            raise StreamappError(f"reading {topic} stalled: partitions {sorted(remaining)} did not reach "
                                 f"their end offsets within 120 s")
        for msg in consumer.consume(num_messages=10_000, timeout=1.0):
            if msg.error():
                raise StreamappError(f"reading {topic}: {msg.error().str()}")
            p = msg.partition()
            if p not in remaining:
                continue
            if msg.offset() < ends[p]:
                yield msg
            if msg.offset() >= ends[p] - 1:
                remaining.discard(p)
                consumer.pause([TopicPartition(topic, p)])


def raw_hours(settings: Settings, now: datetime, since: datetime | None = None) -> list[HourStat]:
    """Records per hour of record timestamp across every exchange's raw topic, from the oldest retained one
    (or ``since``, if later)."""
    consumer = _consumer(settings)
    try:
        counts: dict[datetime, int] = {}
        for exchange in EXCHANGES:
            topic = topics.raw(exchange)
            partitions = _partitions(consumer, topic)
            if not partitions:
                continue
            first = _first_time(consumer, topic, partitions)
            if first is None:
                continue
            hour = hour_of(first if since is None else max(first, since))
            before = _offsets_at(consumer, topic, partitions, hour)
            while hour <= now:
                after = _offsets_at(consumer, topic, partitions, hour + HOUR)
                n = sum(after[p] - before[p] for p in partitions)
                if n:
                    counts[hour] = counts.get(hour, 0) + n
                before, hour = after, hour + HOUR
        return [HourStat(h, n) for h, n in sorted(counts.items())]
    except KafkaException as exc:
        raise StreamappError(f"reading the raw topics at {settings.kafka_bootstrap_servers} failed: "
                             f"{exc.args[0].str()}") from exc
    finally:
        consumer.close()


def raw_plan(cat: Catalog, settings: Settings, now: datetime, since: datetime | None = None,
             until: datetime | None = None) -> Plan:
    return plan(in_window(raw_hours(settings, now, since), since, until), read_log(cat, settings, RAW), now=now,
                grace=timedelta(seconds=settings.iceberg_offload_grace_s),
                retention=timedelta(milliseconds=settings.raw_retention_ms))


def read_hours(settings: Settings, start: datetime, end: datetime) -> pa.Table:
    """Every raw record with a timestamp in ``[start, end)``, as the raw table's Arrow rows."""
    columns: dict[str, list] = {f.name: [] for f in schemas.RAW_SCHEMA.fields}
    consumer = _consumer(settings)
    try:
        for exchange in EXCHANGES:
            topic = topics.raw(exchange)
            partitions = _partitions(consumer, topic)
            if not partitions:
                continue
            begin = _offsets_at(consumer, topic, partitions, start)
            end_at = _offsets_at(consumer, topic, partitions, end)
            wanted = [TopicPartition(topic, p, begin[p]) for p in partitions if end_at[p] > begin[p]]
            if not wanted:
                continue
            consumer.assign(wanted)
            for msg in _drain(consumer, {tp.partition: end_at[tp.partition] for tp in wanted}, topic):
                columns["exchange"].append(exchange)
                columns["topic"].append(topic)
                columns["partition"].append(msg.partition())
                columns["offset"].append(msg.offset())
                columns["timestamp"].append(datetime.fromtimestamp(msg.timestamp()[1] / 1000, timezone.utc))
                columns["key"].append(msg.key())
                columns["value"].append(msg.value())
                columns["headers"].append([{"key": k, "value": v} for k, v in (msg.headers() or [])])
            consumer.unassign()
    except KafkaException as exc:
        raise StreamappError(f"reading the raw topics failed: {exc.args[0].str()}") from exc
    finally:
        consumer.close()
    return pa.table(columns, schema=schemas.RAW_SCHEMA.as_arrow())


def offload_raw_hours(cat: Catalog, settings: Settings, stats: list[HourStat]) -> HourResult:
    """Consecutive hours of raw records (see ``offload.batches``), in one commit."""
    spec = schemas.by_name(schemas.RAW)
    start, end = stats[0].hour, stats[-1].hour + HOUR
    rows = read_hours(settings, start, end)
    replace_hour(catalog.ensure_table(cat, settings, spec), rows, spec.time_column, start, end,
                 {HOUR_PROPERTY: ",".join(s.hour.isoformat() for s in stats), "streamapp.offload.layer": RAW})
    write_log(cat, settings, RAW, stats)  # offsets counted, as the plan counts them (markers included)
    return HourResult([s.hour for s in stats], RAW, {spec.name: rows.num_rows})

