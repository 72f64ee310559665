"""streamapp.coordinator_retry: a coordinator lookup whose connection closes is retried, not a crash.

The sender is aiokafka's own ``Sender`` built without a producer; its client is a stand-in
whose lookup fails as a stopped broker makes it fail (the connection closes under the request).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError, TransactionalIdAuthorizationFailed
from aiokafka.producer.sender import Sender
from aiokafka.util import create_future

from streamapp import coordinator_retry


class Client:
    """Answers FindCoordinator with ``failures`` in turn, then coordinator 1."""

    def __init__(self, failures: list[Exception]) -> None:
        self.failures, self.lookups, self.metadata_updates = failures, 0, 0

    async def coordinator_lookup(self, coordinator_type, coordinator_key) -> int:
        self.lookups += 1
        if self.failures:
            raise self.failures.pop(0)
        return 1

    async def ready(self, node_id, group=None) -> bool:
        return True

    def force_metadata_update(self) -> asyncio.Future:
        self.metadata_updates += 1
        done = create_future()
        done.set_result(True)
        return done


def sender(client: Client) -> Sender:
    s = object.__new__(Sender)
    s.client, s._coordinators, s._retry_backoff = client, {}, 0.001
    s._txn_manager = SimpleNamespace(transactional_id="streamapp-normalizer-0-1")
    return s


def find(client: Client, lookup=None) -> int:
    lookup = lookup or Sender._find_coordinator
    return asyncio.run(lookup(sender(client), 1, "streamapp-normalizer-0-1"))


@pytest.fixture
def installed():
    original = Sender._find_coordinator
    coordinator_retry.install()
    yield
    Sender._find_coordinator = original


def test_aiokafka_alone_crashes_on_a_connection_closed_during_the_lookup():
    """What the worker died of in a CI run (the broker stopped mid-lookup); if aiokafka fixes it, this fails:
    then streamapp.coordinator_retry can go."""
    with pytest.raises(KafkaError, match="Connection at 127.0.0.1:9092 closed"):
        find(Client([KafkaConnectionError("Connection at 127.0.0.1:9092 closed")]),
             coordinator_retry._aiokafka_find_coordinator)  # aiokafka's own, installed or not


def test_with_the_retry_the_lookup_waits_for_the_broker_and_finds_the_coordinator(installed):
    client = Client([KafkaConnectionError("Connection at 127.0.0.1:9092 closed")] * 3)
    assert find(client) == 1
    assert client.lookups == 4 and client.metadata_updates >= 3


def test_other_lookup_errors_still_fail(installed):
    with pytest.raises(TransactionalIdAuthorizationFailed):
        find(Client([TransactionalIdAuthorizationFailed()]))
