"""Kafka admin helpers shared by every process: create the topics streamapp needs.

``ensure_topics`` is idempotent: existing topics are left as they are (their
partition count is checked and a mismatch is logged, never "fixed").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from streamapp import topics as topic_names
from streamapp.errors import StreamappError
from streamapp.settings import Settings

log = logging.getLogger(__name__)


def admin(settings: Settings) -> AdminClient:
    return AdminClient(settings.kafka_client_config())


def topic_config(settings: Settings, topic: str) -> dict[str, str]:
    """Retention by role (the dead-letter topic keeps longer than raw and normalized), and how many
    replicas must have a record before ``acks=all`` producers hear it was written."""
    retention = settings.dlq_retention_ms if topic == topic_names.DLQ else settings.raw_retention_ms
    return {"retention.ms": str(retention), "min.insync.replicas": str(settings.min_insync_replicas)}


def ensure_topics(settings: Settings, topics: Iterable[str], *, timeout_s: float = 30.0,
                  partitions: int | None = None, config: dict[str, str] | None = None) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    Partitions, replication and retention come from ``settings`` unless given.
    """
    wanted = list(dict.fromkeys(topics))
    client = admin(settings)
    try:
        existing = client.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise StreamappError(f"cannot reach the broker at {settings.kafka_bootstrap_servers} to create topics: "
                             f"{exc}. Is it running (streamapp stack up)?") from exc
    n = partitions or settings.topic_partitions
    for name in wanted:
        if name in existing and len(existing[name].partitions) != n:
            log.warning("topic %s exists with %d partitions, not %d: left as is", name,
                        len(existing[name].partitions), n)
    new = [NewTopic(name, num_partitions=n, replication_factor=settings.replication_factor,
                    config=topic_config(settings, name) | (config or {}))
           for name in wanted if name not in existing]
    if not new:
        return []
    created = []
    for name, future in client.create_topics(new, operation_timeout=timeout_s, request_timeout=timeout_s).items():
        try:
            future.result()
            created.append(name)
            log.info("created topic %s (%d partitions, %d replicas)", name, n, settings.replication_factor)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise StreamappError(f"creating topic {name} failed: {exc.args[0].str()}") from exc
    wait_for_leaders(settings, created, timeout_s=timeout_s, client=client)
    return created


# What a partition answers while it has no serving leader yet, the broker has not heard of it,
# or the leader's epoch and the client's metadata disagree (a leader just changed).
_NO_LEADER_YET = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                  KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.UNKNOWN_LEADER_EPOCH, KafkaError.FENCED_LEADER_EPOCH}


def wait_for_leaders(settings: Settings, names: Iterable[str], *, timeout_s: float = 30.0,
                     client: AdminClient | None = None) -> None:
    """Wait, bounded, until every partition of ``names`` has a leader that answers.

    Topic creation returns before that, and the metadata names a leader before the
    broker acts as one: offsets read in between fail with NOT_LEADER_FOR_PARTITION.
    So each partition's leader is asked for its end offset until all of them answer.
    """
    client = client or admin(settings)
    deadline = time.monotonic() + timeout_s
    pending = set(names)
    why = "no metadata yet"
    while pending:
        metadata = client.list_topics(timeout=timeout_s).topics
        asks = {TopicPartition(name, p): OffsetSpec.latest()
                for name in pending if name in metadata for p in metadata[name].partitions}
        waiting = set()
        if asks:
            for tp, future in client.list_offsets(asks, request_timeout=timeout_s).items():
                try:
                    future.result()
                except KafkaException as exc:
                    if exc.args[0].code() not in _NO_LEADER_YET:
                        raise StreamappError(f"reading the end offset of {tp.topic} [{tp.partition}] failed: "
                                             f"{exc.args[0].str()}") from exc
                    why = f"{tp.topic} [{tp.partition}]: {exc.args[0].str()}"
                    waiting.add(tp.topic)
        pending = {name for name in pending if name not in metadata or name in waiting}
        if not pending:
            return
        if time.monotonic() > deadline:
            raise StreamappError(f"topics {sorted(pending)} have no serving partition leader after {timeout_s:.0f}s "
                                 f"({why}): is the broker healthy (`streamapp stack status`)?")
        time.sleep(0.1)
