"""A three-broker local stack (`stack up --brokers 3`): replicated topics, and one broker stopped and started.

Its own home and ports; the session's one-broker stack is not touched.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from streamapp import topics
from streamapp.clients.kafka import ensure_topics
from tests.integration.cluster import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.cli("down", check=False)


def replicas_and_isr(admin: AdminClient, topic: str) -> list[tuple[int, int]]:
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions.values()
    return [(len(p.replicas), len(p.isrs)) for p in partitions]


def min_insync(admin: AdminClient, topic: str) -> str:
    [future] = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
    return future.result(timeout=10)["min.insync.replicas"].value


def test_topics_of_a_three_broker_stack_have_three_replicas_and_min_insync_two(cluster):
    settings = cluster.settings
    admin = AdminClient(settings.kafka_client_config())
    assert sorted(admin.list_topics(timeout=10).brokers) == [1, 2, 3]
    ensure_topics(settings, topics.PIPELINE_TOPICS)
    for topic in (*topics.PIPELINE_TOPICS, "_schemas"):
        assert {rf for rf, _ in replicas_and_isr(admin, topic)} == {3}, topic
        assert min_insync(admin, topic) == "2", topic


def test_a_stopped_broker_keeps_produce_and_consume_working_and_rejoins(cluster):
    settings = cluster.settings
    admin = AdminClient(settings.kafka_client_config())
    topic = f"test.cluster.{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [topic], partitions=3)

    assert cluster.cli("stop", "broker-2").stdout.strip() == "stopped broker-2"
    status = cluster.cli("status", check=False)
    assert status.returncode == 1
    assert [line.split()[-1] for line in status.stdout.splitlines()[1:]] == [
        "healthy", "stopped", "healthy", "healthy", "healthy"], status.stdout

    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True, "acks": "all",
                         "message.timeout.ms": 60_000})
    sent = [f"v{i}".encode() for i in range(300)]
    failed = []
    for i, value in enumerate(sent):
        producer.produce(topic, value, f"k{i % 7}".encode(), on_delivery=lambda err, msg: err and failed.append(err))
    assert producer.flush(90) == 0 and failed == [], failed  # acks=all with 2 of 3 in sync: min.insync holds

    consumer = Consumer({**settings.kafka_client_config(), "group.id": topic, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    received = []
    deadline = time.monotonic() + 90
    try:
        while len(received) < len(sent) and time.monotonic() < deadline:
            msg = consumer.poll(1)
            if msg is not None and msg.error() is None:
                received.append(msg.value())
        consumer.commit(asynchronous=False)  # the group coordinator works without broker-2 too
    finally:
        consumer.close()
    assert sorted(received) == sorted(sent)

    assert "broker-2 healthy at" in cluster.cli("start", "broker-2").stdout
    deadline = time.monotonic() + 90
    while any(isr < 3 for _, isr in replicas_and_isr(admin, topic)):  # it caught up and is back in sync
        assert time.monotonic() < deadline, f"broker-2 did not rejoin the ISR: {replicas_and_isr(admin, topic)}"
        time.sleep(0.5)
    assert cluster.cli("status").returncode == 0
