"""Exactly-once output for Faust agents: each record's output joins *its source partition's* transaction.

faust-streaming 0.15's ``exactly_once`` keeps one transactional producer per
assigned source partition and commits each source partition's offsets through
its producer, but ``Topic.send`` picks the producer by the *destination*
partition (``TransactionManager.send``). Output and offsets then land in
different transactions, and a crash duplicates output even for
``read_committed`` readers (faust-streaming issues #517, #177; reproduced here
by ``tests/integration/test_normalizer.py``: 468 duplicates after one SIGKILL).

:func:`send_in_source_transactions` sends each event's output through the
producer that also commits that event's offset, holding Faust's per-transaction
locks for the whole batch so a commit cannot fall between two of its records.
The events are acknowledged right after it returns, so a commit includes either
an event's offset and all its output, or neither.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AsyncExitStack
from typing import Any, Protocol

from aiokafka.partitioner import DefaultPartitioner

_PARTITIONER = DefaultPartitioner()


class Record(Protocol):
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


async def send_in_source_transactions(app: Any, batch: Iterable[tuple[Any, Iterable[Record]]]) -> None:
    """Produce each event's records inside the transaction that will commit that event's offset.

    ``batch`` pairs events with their output. All transactions involved are locked
    (in a fixed order, so two callers cannot deadlock) before the first record is
    sent and released after the last, so a commit sees all of the batch's output
    or none of it; the caller acknowledges the events right after, without
    yielding to the event loop in between (Faust's ``take_events`` does).
    """
    transactions = app.consumer.transactions  # Faust's TransactionManager (exactly_once only)
    driver = transactions.producer
    by_transaction: dict[str, list[Record]] = {}
    for event, records in batch:
        [transactional_id] = transactions._tps_to_transactional_ids({event.message.tp})
        by_transaction.setdefault(transactional_id, []).extend(records)
    async with AsyncExitStack() as locks:
        producers = {}
        for transactional_id in sorted(by_transaction):
            await locks.enter_async_context(driver._trn_locks[transactional_id])
            producer = driver._transaction_producers.get(transactional_id)
            if producer is None:
                raise RuntimeError(
                    f"no transactional producer {transactional_id!r}: its partition was revoked mid-batch; "
                    "the batch will be redelivered to the partition's new owner"
                )
            producers[transactional_id] = producer
        for transactional_id, records in by_transaction.items():
            await _send_batched(producers[transactional_id], records)


async def _send_batched(producer: Any, records: list[Record]) -> None:
    """Send records as one aiokafka batch per topic-partition (per-record ``send`` costs ~10x more).

    Partitions are chosen as ``send`` would: aiokafka's default (murmur2 of the key,
    Java-compatible), so a symbol's records keep one partition whichever path wrote them.
    """
    by_partition: dict[tuple[str, int], list[Record]] = {}
    partitions: dict[str, list[int]] = {}
    for record in records:
        if record.topic not in partitions:
            partitions[record.topic] = sorted(await producer.partitions_for(record.topic))
        every = partitions[record.topic]
        partition = _PARTITIONER(record.key, every, every)
        by_partition.setdefault((record.topic, partition), []).append(record)
    for (topic, partition), group in by_partition.items():
        batch = producer.create_batch()
        for record in group:
            if batch.append(key=record.key, value=record.value, timestamp=None, headers=record.headers) is None:
                await producer.send_batch(batch, topic, partition=partition)  # full: ship it, start another
                batch = producer.create_batch()
                batch.append(key=record.key, value=record.value, timestamp=None, headers=record.headers)
        await producer.send_batch(batch, topic, partition=partition)
