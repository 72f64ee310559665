"""Kafka admin helpers shared by every process: create the topics streamapp needs.

``ensure_topics`` is idempotent: existing topics are left as they are (their
partition count is checked and a mismatch is logged, never "fixed").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streamapp import topics as topic_names
from streamapp.errors import StreamappError
from streamapp.settings import Settings

log = logging.getLogger(__name__)


def admin(settings: Settings) -> AdminClient:
    return AdminClient(settings.kafka_client_config())


def topic_config(settings: Settings, topic: str) -> dict[str, str]:
    """Retention by role: the dead-letter topic keeps longer than raw and normalized."""
    retention = settings.dlq_retention_ms if topic == topic_names.DLQ else settings.raw_retention_ms
    return {"retention.ms": str(retention)}


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
    new = [NewTopic(name, num_partitions=n, replication_factor=settings.topic_replication_factor,
                    config=topic_config(settings, name) | (config or {}))
           for name in wanted if name not in existing]
    if not new:
        return []
    created = []
    for name, future in client.create_topics(new, operation_timeout=timeout_s, request_timeout=timeout_s).items():
        try:
            future.result()
            created.append(name)
            log.info("created topic %s (%d partitions)", name, n)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise StreamappError(f"creating topic {name} failed: {exc.args[0].str()}") from exc
    return created
