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

That needs one more guard: Faust's commit reads the acknowledged offsets
*before* it waits for a transaction's lock, so a commit that began while a batch
was being sent would end that transaction with the batch's output but the older
offsets (90 duplicates after a SIGKILL in one CI run). :func:`guard_commits`
makes a commit wait for the batch in flight, and its acknowledgements, before it
reads the offsets.
"""

from __future__ import annotations

import asyncio
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


def guard_commits(consumer: Any) -> asyncio.Lock:
    """The lock that keeps the consumer's commits out of a batch's send-and-acknowledge.

    Installed once per consumer (idempotent), before the first batch: every commit
    (periodic, on rebalance, on stop) goes through ``Consumer.force_commit``, which
    then reads the acknowledged offsets only while no batch is between its first
    send and its acknowledgement.
    """
    lock = getattr(consumer, "_streamapp_output_lock", None)
    if lock is None:
        lock = asyncio.Lock()
        commit = consumer.force_commit

        async def force_commit(*args: Any, **kwargs: Any) -> bool:
            async with lock:
                return await commit(*args, **kwargs)

        consumer.force_commit = force_commit
        consumer._streamapp_output_lock = lock
    return lock


async def send_in_source_transactions(app: Any, batch: Iterable[tuple[Any, Iterable[Record]]]) -> None:
    """Produce each event's records inside the transaction that will commit that event's offset.

    ``batch`` pairs events with their output. All transactions involved are locked
    (in a fixed order, so two callers cannot deadlock) before the first record is
    sent and released after the last, so a commit sees all of the batch's output
    or none of it; the caller acknowledges the events right after, without
    yielding to the event loop in between (Faust's ``take_events`` does), so a
    commit waiting on :func:`guard_commits`'s lock sees the batch's offsets too.
    """
    transactions = app.consumer.transactions  # Faust's TransactionManager (exactly_once only)
    driver = transactions.producer
    by_transaction: dict[str, list[Record]] = {}
    for event, records in batch:
        [transactional_id] = transactions._tps_to_transactional_ids({event.message.tp})
        by_transaction.setdefault(transactional_id, []).extend(records)
    async with AsyncExitStack() as locks:
        await locks.enter_async_context(guard_commits(app.consumer))
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
