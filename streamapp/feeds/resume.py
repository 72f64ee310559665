"""Where a feed left off: the last trade id per symbol on its raw topic, read back at start.

The raw topic is the feed's memory: what is on it was published, nothing else was. Reading
the newest records of each partition (parsed by the exchange's own protocol module: live
frames with ``classify``, REST backfill bodies with ``backfill_page`` within their range
header) gives, per exchange symbol, the highest trade id published and its time, so the
first frame after a restart shows whatever was missed meanwhile as a gap.
"""

from __future__ import annotations

import logging
import time
import uuid
from types import ModuleType

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from streamapp import headers
from streamapp.feeds.frames import Kind
from streamapp.settings import Settings

log = logging.getLogger(__name__)

# A topic just created has partitions whose leader is not known yet for a moment.
_NOT_YET = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART}


def last_published(settings: Settings, topic: str, protocol: ModuleType, symbols: list[str], *,
                   window: int = 1000, max_records: int = 200_000,
                   timeout_s: float = 60.0) -> dict[str, tuple[int, float | None]]:
    """``{symbol: (last trade id, its time in s or None)}`` for the ``symbols`` found on ``topic``.

    Reads the last ``window`` records of every partition, then further back (4x each round)
    for symbols not found yet, up to ``max_records`` in all or the start of the log.
    """
    wanted = set(symbols)
    found: dict[str, tuple[int, float | None]] = {}
    consumer = Consumer(settings.kafka_client_config() | {
        "group.id": f"streamapp-feed-resume-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "enable.partition.eof": False})
    began = time.monotonic()
    read = 0
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            log.info("%s: raw topic %s not found: starting without memory", protocol.EXCHANGE, topic)
            return found
        marks = {p: watermarks(consumer, topic, p, began + timeout_s) for p in meta.partitions}
        start = {p: high for p, (_low, high) in marks.items()}  # read so far: [start, high)
        while wanted - set(found) and read < max_records:
            region = {p: (max(marks[p][0], start[p] - window), start[p]) for p in marks}
            region = {p: span for p, span in region.items() if span[0] < span[1]}
            if not region:
                break
            read += _read(consumer, topic, region, protocol, wanted, found, began + timeout_s)
            start.update({p: span[0] for p, span in region.items()})
            window *= 4
    except KafkaException as exc:
        log.error("%s: could not read the tail of %s (%s): starting without memory for the symbols not found",
                  protocol.EXCHANGE, topic, exc)
    finally:
        consumer.close()
    log.info("%s: read %d records of %s in %.2fs: last published trade found for %d of %d symbols",
             protocol.EXCHANGE, read, topic, time.monotonic() - began, len(found), len(wanted))
    return found


def watermarks(consumer: Consumer, topic: str, partition: int, deadline: float) -> tuple[int, int]:
    """(low, high) offsets of a partition, asked again while its leader is not there yet (a new topic)."""
    while True:
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        except KafkaException as exc:
            if exc.args[0].code() not in _NOT_YET or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _read(consumer: Consumer, topic: str, region: dict[int, tuple[int, int]], protocol: ModuleType,
          wanted: set[str], found: dict[str, tuple[int, float | None]], deadline: float) -> int:
    """Read ``[first, end)`` of each partition in ``region`` into ``found``; the records read."""
    consumer.assign([TopicPartition(topic, p, first) for p, (first, _end) in region.items()])
    remaining = {p: end for p, (_first, end) in region.items()}
    read = 0
    while remaining and time.monotonic() < deadline:
        for msg in consumer.consume(500, timeout=0.5):
            if msg.error() is not None or msg.partition() not in remaining:
                continue
            if msg.offset() >= remaining[msg.partition()]:
                continue
            read += 1
            if msg.offset() + 1 >= remaining[msg.partition()]:
                del remaining[msg.partition()]
            for symbol, last_id, at in _published(protocol, msg):
                if symbol in wanted and last_id > found.get(symbol, (last_id - 1, None))[0]:
                    found[symbol] = (last_id, at)
    if remaining:
        raise KafkaException(f"timed out reading partitions {sorted(remaining)}")
    consumer.unassign()
    return read


def _published(protocol: ModuleType, msg) -> list[tuple[str, int, float | None]]:
    """(symbol, highest trade id, its time) that one raw record published."""
    hdrs = dict(msg.headers() or ())
    value = msg.value() or b""
    if hdrs.get(headers.SOURCE, headers.SOURCE_WS) == headers.SOURCE_BACKFILL:
        try:
            first, last = map(int, hdrs[headers.BACKFILL_RANGE].split(b"-"))
            trades, _ = protocol.backfill_page(value)
        except (KeyError, ValueError, TypeError, IndexError):
            return []
        inside = [(i, at) for i, at in trades if first <= i <= last]
        if not inside or not msg.key():
            return []
        top = max(inside)
        return [(msg.key().decode("utf-8", "replace"), top[0], top[1])]
    frame = protocol.classify(value)
    if frame.kind is not Kind.TRADE:
        return []
    return [(symbol, max(ids), frame.last_time.get(symbol)) for symbol, ids in frame.ids.items()]
