"""streamapp.eos.send_in_source_transactions: output joins the transaction of its *source* partition.

Real Faust objects (an exactly-once app, its TransactionManager and aiokafka
driver, whose per-transaction locks the function takes) and real aiokafka
batches; only the transactional producers' network side is replaced: their
``send_batch`` records what would go to the broker. The whole path against a
broker, with a SIGKILL, is tests/integration/test_normalizer.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import faust
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streamapp.eos import send_in_source_transactions

RAW = "market.crypto.trades.binance.raw"
OUT = "market.crypto.trades.binance.normalized"
OUT_PARTITIONS = [0, 1, 2]


@dataclass
class Record:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class Message:
    tp: TP


@dataclass
class Event:
    message: Message


def event(partition: int) -> Event:
    return Event(Message(TP(RAW, partition)))


class TransactionProducer(AIOKafkaProducer):
    """aiokafka's producer, batches and all, with the broker replaced by a list of what was sent."""

    def __init__(self, name: str, sent: list, max_batch_size: int = 16384, pause_s: float = 0.0) -> None:
        super().__init__(max_batch_size=max_batch_size)
        self.name, self.sent, self.pause_s = name, sent, pause_s

    async def partitions_for(self, topic):
        return set(OUT_PARTITIONS)

    def create_batch(self):
        batch = super().create_batch()
        batch.keys = []
        append = batch.append

        def recording_append(*, key, value, timestamp, headers=()):
            metadata = append(key=key, value=value, timestamp=timestamp, headers=headers)
            if metadata is not None:
                batch.keys.append(key)
            return metadata

        batch.append = recording_append
        return batch

    async def send_batch(self, batch, topic, *, partition):
        await asyncio.sleep(self.pause_s)
        self.sent.append((self.name, topic, partition, batch.keys))


@pytest.fixture
def app():
    """An exactly-once app whose TransactionManager maps every topic to group 0 (no rebalance ran)."""
    app = faust.App("eos-send", broker="kafka://127.0.0.1:1", processing_guarantee="exactly_once")
    app.assignor.group_for_topic = lambda topic: 0
    app.assignor.is_standby = lambda tp: False
    yield app
    faust_aiokafka.Producer._trn_locks.clear()
    faust_aiokafka.Producer._transaction_producers.clear()


def transaction_of(app, partition: int) -> str:
    [transactional_id] = app.consumer.transactions._tps_to_transactional_ids({TP(RAW, partition)})
    return transactional_id


def begin(app, partitions, sent, **kwargs) -> None:
    """What Faust's begin_transaction leaves behind for each assigned source partition."""
    driver = app.consumer.transactions.producer
    for partition in partitions:
        tid = transaction_of(app, partition)
        driver._transaction_producers[tid] = TransactionProducer(tid, sent, **kwargs)
        driver._trn_locks[tid] = asyncio.Lock()


def test_each_events_output_goes_through_its_source_partitions_producer(app):
    sent: list = []
    keys = [b"BTC/USDT", b"ETH/USDT", b"SOL/USDT", b"XRP/USDT"]

    async def scenario():
        begin(app, [0, 1, 2], sent)
        await send_in_source_transactions(app, [
            (event(2), [Record(OUT, k, b"from-2") for k in keys]),
            (event(0), [Record(OUT, keys[0], b"from-0")]),
            (event(2), [Record(OUT, keys[1], b"from-2-again")]),
            (event(1), []),  # a control frame: no output, nothing sent
        ])

    asyncio.run(scenario())
    by_producer: dict[str, list[bytes]] = {}
    for name, topic, partition, batch_keys in sent:
        assert topic == OUT
        by_producer.setdefault(name, []).extend(batch_keys)
    # Whatever the destination partition, the source partition's producer sent it.
    assert sorted(by_producer[transaction_of(app, 2)]) == sorted(keys + [keys[1]])
    assert by_producer[transaction_of(app, 0)] == [keys[0]]
    assert transaction_of(app, 1) not in by_producer


def test_records_go_to_the_partition_aiokafka_send_would_choose(app):
    """murmur2 of the key, as Java and aiokafka's ``send``: a symbol keeps one partition."""
    partitioner = DefaultPartitioner()
    sent: list = []
    keys = [f"SYM{i}/USDT".encode() for i in range(30)]

    async def scenario():
        begin(app, [0], sent)
        await send_in_source_transactions(app, [(event(0), [Record(OUT, k, b"v") for k in keys])])

    asyncio.run(scenario())
    placed = {key: partition for _, _, partition, batch_keys in sent for key in batch_keys}
    assert placed == {key: partitioner(key, OUT_PARTITIONS, OUT_PARTITIONS) for key in keys}
    assert len({p for p in placed.values()}) == len(OUT_PARTITIONS)  # the keys spread: the check means something


def test_a_full_batch_is_shipped_and_the_rest_follows_in_order(app):
    sent: list = []
    keys = [b"BTC/USDT"] * 60
    values = [f"{i:04d}".encode() * 50 for i in range(60)]  # 200 bytes each, 1 KiB batches

    async def scenario():
        begin(app, [0], sent, max_batch_size=1024)
        await send_in_source_transactions(app, [(event(0), [Record(OUT, k, v) for k, v in zip(keys, values)])])

    asyncio.run(scenario())
    assert len(sent) > 1
    assert sum(len(batch_keys) for *_, batch_keys in sent) == 60
    assert len({(topic, partition) for _, topic, partition, _ in sent}) == 1


def test_a_commit_of_the_transaction_waits_until_the_whole_batch_is_sent(app):
    """The lock of every transaction involved is held from the first send to the last."""
    sent: list = []
    driver = app.consumer.transactions.producer
    committed_after: list[int] = []

    async def scenario():
        begin(app, [0, 1], sent, pause_s=0.01)

        async def commit_when_sending_starts():
            while not sent:
                await asyncio.sleep(0.001)
            for tid in (transaction_of(app, 0), transaction_of(app, 1)):
                async with driver._trn_locks[tid]:  # what commit_transactions takes
                    committed_after.append(len(sent))

        committer = asyncio.create_task(commit_when_sending_starts())
        await send_in_source_transactions(app, [
            (event(p), [Record(OUT, f"K{i}".encode(), b"v") for i in range(20)]) for p in (0, 1)
        ])
        await asyncio.wait_for(committer, 5)

    asyncio.run(scenario())
    assert committed_after == [len(sent), len(sent)]
    assert len(sent) > 2


def test_a_batch_from_a_revoked_partition_fails_before_anything_is_sent(app):
    sent: list = []
    driver = app.consumer.transactions.producer

    async def scenario():
        begin(app, [0, 1], sent)
        driver._transaction_producers.pop(transaction_of(app, 1))  # what stop_transaction does on revoke
        with pytest.raises(RuntimeError, match=r"no transactional producer .*revoked mid-batch"):
            await send_in_source_transactions(app, [
                (event(0), [Record(OUT, b"BTC/USDT", b"v")]), (event(1), [Record(OUT, b"BTC/USDT", b"v")])])
        # Nothing half-sent, and no lock left held for the next owner's commit.
        assert not any(lock.locked() for lock in driver._trn_locks.values())

    asyncio.run(scenario())
    assert sent == []
