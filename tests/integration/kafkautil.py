"""Test helpers for reading topics from a known position (the shared stack keeps earlier data)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, Message, TopicPartition

from streamapp.clients.kafka import wait_for_leaders
from streamapp.settings import Settings


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    wait_for_leaders(settings, [topic])  # a new topic's leader may not answer yet (NOT_LEADER_FOR_PARTITION)
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"probe-{uuid.uuid4().hex}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


def read_from(settings: Settings, topic: str, start: dict[int, int], *, until: int | Callable[[list[Message]], bool],
              timeout_s: float, isolation: str = "read_committed") -> list[Message]:
    """Records after ``start`` (partition -> offset), until ``until`` arrived (a count, or a predicate on
    the records read so far: other tests share the topics) or ``timeout_s`` passed."""
    done = until if callable(until) else (lambda records: len(records) >= until)
    consumer = Consumer({
        **settings.kafka_client_config(), "group.id": f"probe-{uuid.uuid4().hex}",
        "enable.auto.commit": False, "isolation.level": isolation,
        # A new topic's leader may answer "offset out of range" for offset 0 at first; the default
        # reset (latest) would then skip every record silently.
        "auto.offset.reset": "earliest",
    })
    consumer.assign([TopicPartition(topic, p, o) for p, o in start.items()])
    records: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not done(records) and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is None:
                    records.append(msg)
    finally:
        consumer.close()
    return records


def count_from(settings: Settings, topic: str, start: dict[int, int]) -> int:
    """How many records (committed) are past ``start`` right now."""
    ends = end_offsets(settings, topic)
    return sum(ends[p] - start.get(p, 0) for p in ends)
