"""The local broker's set-up that needs no broker: its KRaft cluster id, its nodes' configuration."""

from __future__ import annotations

import base64
import uuid

from streamapp.stack.kafka import new_cluster_id

# URL-safe base64 of these bytes starts with "-" (its first six bits are 62).
DASHED = uuid.UUID(bytes=b"\xf8" + bytes(15))
PLAIN = uuid.UUID(int=0x0123456789ABCDEF0123456789ABCDEF)


def test_a_cluster_id_starting_with_a_dash_is_drawn_again():
    # kafka-storage's parser takes "-..." for an option: `stack up` failed about once in 64 fresh starts.
    assert base64.urlsafe_b64encode(DASHED.bytes).decode().startswith("-")
    draws = iter([DASHED, DASHED, PLAIN])
    assert new_cluster_id(lambda: next(draws)) == "ASNFZ4mrze8BI0VniavN7w"


def test_a_cluster_id_is_22_url_safe_characters_of_a_uuid():
    for _ in range(2000):
        cluster_id = new_cluster_id()
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_random_draws_do_start_with_a_dash_sometimes():
    """The case above is real: among 2,000 random UUIDs some encode with a leading dash (p ≈ 1/64)."""
    encoded = (base64.urlsafe_b64encode(uuid.uuid4().bytes).decode() for _ in range(2000))
    assert any(text.startswith("-") for text in encoded)


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_node_two_of_a_three_node_stack():
    from streamapp.settings import Settings
    from streamapp.stack.kafka import server_properties

    settings = Settings(home="/tmp/s", stack_brokers=3, kafka_bootstrap_servers="127.0.0.1:19092",
                        kafka_controller_port=19093)
    props = properties(server_properties(settings, 2))
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19094,CONTROLLER://127.0.0.1:19095"
    assert props["log.dirs"] == "/tmp/s/kafka/broker-2/logs"
    assert (props["offsets.topic.replication.factor"], props["transaction.state.log.replication.factor"],
            props["transaction.state.log.min.isr"]) == ("3", "3", "2")
    assert (settings.replication_factor, settings.min_insync_replicas) == (3, 2)


def test_a_one_node_stack_keeps_its_layout():
    from streamapp.settings import Settings
    from streamapp.stack.kafka import server_properties

    props = properties(server_properties(Settings(home="/tmp/s", stack_brokers=1, kafka_controller_port=9093,
                                                  kafka_bootstrap_servers="127.0.0.1:9092")))
    assert (props["node.id"], props["controller.quorum.voters"]) == ("1", "1@127.0.0.1:9093")
    assert props["log.dirs"] == "/tmp/s/kafka/logs"
    assert (props["offsets.topic.replication.factor"], props["transaction.state.log.min.isr"]) == ("1", "1")


def test_a_stack_formatted_for_three_nodes_refuses_to_run_with_one(tmp_path, monkeypatch):
    import pytest

    from streamapp.errors import StreamappError
    from streamapp.settings import Settings
    from streamapp.stack import kafka, services

    three = Settings(home=tmp_path, stack_brokers=3)
    kafka.cluster_id(three)  # what formatting the first node records
    with pytest.raises(StreamappError, match=r"is a 3-broker cluster, not 1: set STREAMAPP_STACK_BROKERS=3"):
        kafka.check_cluster_size(Settings(home=tmp_path, stack_brokers=1))
    monkeypatch.delenv("STREAMAPP_STACK_BROKERS", raising=False)  # not given: the stack's own size is used
    adopted = services.for_stack(Settings(home=tmp_path, kafka_bootstrap_servers="127.0.0.1:9092"))
    assert adopted.stack_brokers == 3
    assert adopted.kafka_bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
