"""Exactly-once output for Faust agents: each record's output joins *its source partition's* transaction.

faust-streaming 0.15's ``exactly_once`` keeps one transactional producer per
assigned source partition and commits each source partition's offsets through
its producer, but ``Topic.send`` picks the producer by the *destination*
partition (``TransactionManager.send``). Output and offsets then land in
different transactions, and a crash duplicates output even for
``read_committed`` readers (faust-streaming issues #517, #177; reproduced here
by ``tests/integration/test_normalizer.py``: 468 duplicates after one SIGKILL).

:func:`send_in_source_transaction` sends all of one event's output through the
producer that also commits that event's offset, holding Faust's per-transaction
lock for the whole event so a commit cannot fall between two of its records.
The event is acknowledged only after this returns, so a commit includes either
the event's offset and all its output, or neither.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class Record(Protocol):
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


async def send_in_source_transaction(app: Any, event: Any, records: Iterable[Record]) -> None:
    """Produce ``records`` inside the transaction that will commit ``event``'s offset."""
    transactions = app.consumer.transactions  # Faust's TransactionManager (exactly_once only)
    [transactional_id] = transactions._tps_to_transactional_ids({event.message.tp})
    driver = transactions.producer
    producer = driver._transaction_producers.get(transactional_id)
    if producer is None:
        raise RuntimeError(
            f"no transactional producer {transactional_id!r} for {event.message.tp}: "
            "partition revoked mid-event; the event will be redelivered to its new owner"
        )
    async with driver._trn_locks[transactional_id]:
        for record in records:
            await producer.send(record.topic, record.value, key=record.key, headers=record.headers)
