"""streamapp.eos: a batch's output and its offsets end up in the same transaction, and commits run concurrently.

The consumer here is a real :class:`streamapp.eos.BatchConsumer` built without
Faust's start-up; its Faust collaborators (transaction manager, transactional
producers) are stand-ins with aiokafka's shape that record what they are asked
to do. The whole path with Faust, the broker and a SIGKILL is
tests/integration/agents/test_normalizer.py.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

import pytest
from aiokafka.errors import ProducerClosed, ProducerFenced
from aiokafka.partitioner import DefaultPartitioner
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streamapp.dispatch import Outgoing
from streamapp.eos import FAUST_PRIVATE_NAMES, App, BatchConsumer

RAW = "market.crypto.trades.binance.raw"
OUT = "market.crypto.trades.binance.normalized"


class Batch:
    def __init__(self) -> None:
        self.records: list = []

    def append(self, *, key: bytes | None, value: bytes, timestamp: None, headers: list) -> object:
        self.records.append((key, value, headers))
        return object()  # aiokafka returns metadata, or None when the batch is full


class Producer:
    """An AIOKafkaProducer stand-in for one transactional id; ``log`` is shared by all of them."""

    def __init__(self, name: str, log: list, send_delay_s: float = 0.0) -> None:
        self.name, self.log, self.send_delay_s = name, log, send_delay_s

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def create_batch(self) -> Batch:
        return Batch()

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future:
        await asyncio.sleep(self.send_delay_s)  # on its way to the broker
        self.log.append((self.name, "send", topic, partition, len(batch.records)))
        delivered = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered

    async def send_offsets_to_transaction(self, offsets: dict, group_id: str) -> None:
        self.log.append((self.name, "offsets", {tp.partition: o for tp, o in offsets.items()}))

    async def commit_transaction(self) -> None:
        Producer.in_flight += 1
        Producer.most_in_flight = max(Producer.most_in_flight, Producer.in_flight)
        await asyncio.sleep(0.01)
        Producer.in_flight -= 1
        self.log.append((self.name, "commit"))

    async def begin_transaction(self) -> None:
        self.log.append((self.name, "begin"))

    in_flight = 0
    most_in_flight = 0


def consumer(partitions: int = 3, send_delay_s: float = 0.0) -> tuple[BatchConsumer, list]:
    log: list = []
    tids = {p: f"g-1-{p}" for p in range(partitions)}
    driver = SimpleNamespace(
        _trn_locks=defaultdict(asyncio.Lock),
        _transaction_producers={tid: Producer(tid, log, send_delay_s) for tid in tids.values()},
    )
    c = object.__new__(BatchConsumer)  # no Faust start-up: only what these methods use
    c.app = SimpleNamespace(
        consumer_generation_id=1, conf=SimpleNamespace(id="g"),
        monitor=SimpleNamespace(stream_inbound_time={}, on_tp_commit=lambda offsets: None),
    )
    c.transactions = SimpleNamespace(
        producer=driver, _tps_to_transactional_ids=lambda tps: {tids[tp.partition] for tp in tps},
    )
    c.flow_active = True
    c.assignment = lambda: {TP(RAW, p) for p in range(partitions)}
    c._done, c._committed, c._partitions, c._partition_of = {}, {}, {}, {}
    return c, log


def trades(n: int) -> list[Outgoing]:
    return [Outgoing(OUT, b"BTC/USDT", b"avro", []) for _ in range(n)]


def test_a_commit_that_starts_while_a_batch_is_sent_commits_the_batch_offsets_with_its_output():
    async def scenario() -> list:
        c, log = consumer(send_delay_s=0.02)
        await c._send_and_ack([(TP(RAW, 0), 49, trades(50))], generation=1)
        await c.force_commit()
        del log[:]
        batch = asyncio.ensure_future(c._send_and_ack([(TP(RAW, 0), 99, trades(50))], generation=1))
        await asyncio.sleep(0.005)  # the batch holds its transaction's lock, its records in flight
        assert log == []
        await c.force_commit()
        await batch
        return log

    log = asyncio.run(scenario())
    # Faust's own commit reads the offsets (50) before it waits for the lock, and would commit
    # the second batch's records with them: duplicates after a crash.
    assert log == [("g-1-0", "send", OUT, DefaultPartitioner()(b"BTC/USDT", [0, 1, 2], [0, 1, 2]), 50),
                   ("g-1-0", "offsets", {0: 100}), ("g-1-0", "commit"), ("g-1-0", "begin")]


def test_each_source_partition_commits_in_its_own_transaction_and_all_at_once():
    async def scenario() -> tuple[list, BatchConsumer]:
        c, log = consumer()
        await c._send_and_ack([(TP(RAW, p), 10 * p + 9, trades(2)) for p in range(3)], generation=1)
        Producer.in_flight = Producer.most_in_flight = 0
        assert await c.force_commit() is True
        assert await c.force_commit() is False  # nothing new: no empty transactions
        return log, c

    log, c = asyncio.run(scenario())
    assert sorted(e for e in log if e[1] == "offsets") == [
        ("g-1-0", "offsets", {0: 10}), ("g-1-1", "offsets", {1: 20}), ("g-1-2", "offsets", {2: 30}),
    ]
    assert Producer.most_in_flight == 3  # concurrent, not one round trip after the other
    assert c._committed == {TP(RAW, 0): 10, TP(RAW, 1): 20, TP(RAW, 2): 30}


def test_a_batch_fetched_before_a_rebalance_is_dropped_unacknowledged():
    async def scenario() -> tuple[list, BatchConsumer]:
        c, log = consumer()
        c.app.consumer_generation_id = 2  # a rebalance happened after the fetch of generation 1
        await c._send_and_ack([(TP(RAW, 0), 99, trades(100))], generation=1)
        await c.force_commit()
        return log, c

    log, c = asyncio.run(scenario())
    assert log == [] and c._done == {}  # its partition's owner reads it again from the committed offset


def test_a_batch_fetched_while_a_new_partition_s_producer_starts_is_dropped_instead_of_crashing():
    """Seen in the fleet test: the generation id changes before Faust starts the producers, the fetcher still
    fetches while the flow is stopped, and a partition taken over has no transaction lock until its producer
    has started (slow when it must first abort the killed worker's open transaction)."""
    async def scenario() -> tuple[list, BatchConsumer]:
        c, log = consumer()
        driver = c.transactions.producer
        driver._trn_locks = {"g-1-1": asyncio.Lock(), "g-1-2": asyncio.Lock()}  # Faust makes one per started producer
        driver._transaction_producers.pop("g-1-0")
        c.flow_active = False  # the rebalance of the batch's own generation is under way
        await c._send_and_ack([(TP(RAW, 0), 9, trades(1))], generation=1)
        return log, c

    log, c = asyncio.run(scenario())
    assert log == [] and c._done == {}  # read again from the committed offset once the rebalance ends


class PartitionLog:
    """One raw partition as aiokafka fetches it: each fetch returns the next records from the
    consumer's position and moves it on; a seek to the committed offsets moves it back."""

    def __init__(self, tp: TP, committed: int, end: int, batch: int = 50) -> None:
        self.tp, self.committed, self.end, self.batch = tp, committed, end, batch
        self.position = committed
        self.fetches = 0

    def fetch(self) -> list:
        first, self.position = self.position, min(self.end, self.position + self.batch)
        self.fetches += 1
        return [SimpleNamespace(offset=o) for o in range(first, self.position)]

    async def seek_to_committed(self) -> dict:
        self.position = self.committed
        return {self.tp: self.committed}


def draining(c: BatchConsumer, partition: PartitionLog, on_fetch) -> asyncio.Future:
    """Run ``c``'s real drain loop on ``partition`` until it is read to its end; ``on_fetch(n)`` runs
    as the n-th fetch returns (Faust's rebalance runs on its own meanwhile)."""
    c._stopped, c._crashed = asyncio.Event(), asyncio.Event()
    c._transforms = {RAW: lambda records: trades(len(records))}
    c._committed_offset = {}
    c.seek_to_committed = partition.seek_to_committed

    async def wait_next_records(timeout: float) -> tuple[dict, None]:
        await asyncio.sleep(0)
        if partition.position >= partition.end:
            c._stopped.set()
            return {}, None
        records = partition.fetch()
        on_fetch(partition.fetches)
        return {partition.tp: records}, None

    c._wait_next_records = wait_next_records
    return asyncio.ensure_future(c._drain_messages(SimpleNamespace(should_stop=False)))


def test_a_batch_fetched_after_the_rebalance_s_seek_but_before_the_flow_resumes_is_read_again():
    """Seen in the fleet test (1 run in 12): a fetch that began before a fast rebalance returned after its
    seek to the committed offsets, while the flow was still stopped. That batch was dropped with the
    consumer already past it, and the next batches' offsets committed over it (here: offsets 100..149).
    Faust's own getmany seeks back to the committed offsets whenever it fetched with the flow stopped."""
    async def scenario() -> tuple[list, BatchConsumer]:
        c, log = consumer()
        tp = TP(RAW, 0)
        c.flow_active = False  # the rebalance has sought to the committed offset 100, the flow not resumed yet
        c._read_offset = defaultdict(lambda: None, {tp: 100})

        def resume_with_the_second_fetch(n: int) -> None:
            c.flow_active = c.flow_active or n == 2

        await draining(c, PartitionLog(tp, committed=100, end=200), resume_with_the_second_fetch)
        await c.force_commit()
        return log, c

    log, c = asyncio.run(scenario())
    assert sum(e[4] for e in log if e[1] == "send") == 100  # offsets 100..199, each once
    assert ("g-1-0", "offsets", {0: 200}) in log


def test_a_revoked_partition_s_batch_is_dropped_and_the_others_are_sent():
    async def scenario() -> tuple[list, BatchConsumer]:
        c, log = consumer()
        c.assignment = lambda: {TP(RAW, 1)}
        c.transactions.producer._transaction_producers.pop("g-1-0")
        await c._send_and_ack([(TP(RAW, 0), 9, trades(1)), (TP(RAW, 1), 19, trades(1))], generation=1)
        return log, c

    log, c = asyncio.run(scenario())
    assert [e[:2] for e in log] == [("g-1-1", "send")] and c._done == {TP(RAW, 1): 20}


def test_a_partition_still_ours_without_a_producer_is_a_crash_not_a_silent_drop():
    """Flow running, same generation, partition assigned, but no transactional producer (say Faust
    swallowed a failed start): dropping the batch would let later batches' offsets commit past it."""
    async def scenario() -> None:
        c, log = consumer()
        c.transactions.producer._transaction_producers.pop("g-1-0")
        await c._send_and_ack([(TP(RAW, 0), 9, trades(1))], generation=1)

    with pytest.raises(RuntimeError, match="no transactional producer"):
        asyncio.run(scenario())


def test_a_producer_stopped_by_a_rebalance_during_the_send_drops_the_batch_instead_of_crashing():
    async def scenario() -> BatchConsumer:
        c, log = consumer()
        producers = c.transactions.producer._transaction_producers

        class Stopped(Producer):
            async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future:
                producers.pop(self.name)  # Faust's stop_transaction pops it, then stops it: sends fail
                raise ProducerClosed()

        producers["g-1-0"] = Stopped("g-1-0", log)
        await c._send_and_ack([(TP(RAW, 0), 9, trades(1))], generation=1)
        return c

    assert asyncio.run(scenario())._done == {}  # not acknowledged: the partition's next owner reads it again


def test_a_send_error_on_a_producer_still_owned_is_a_crash():
    class Failing(Producer):
        async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future:
            raise ProducerClosed()

    async def scenario() -> None:
        c, log = consumer()
        c.transactions.producer._transaction_producers["g-1-0"] = Failing("g-1-0", log)
        await c._send_and_ack([(TP(RAW, 0), 9, trades(1))], generation=1)

    with pytest.raises(ProducerClosed):
        asyncio.run(scenario())


class FencedDuringRebalance(Producer):
    """The partition's next owner started its producer with our transactional id: the broker fences ours."""

    def __init__(self, name: str, log: list, on_send) -> None:
        super().__init__(name, log)
        self.on_send = on_send

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future:
        self.on_send()
        raise ProducerFenced()


def test_a_batch_fenced_by_the_partition_s_next_owner_is_dropped_instead_of_crashing():
    """Seen in a fleet test: a worker killed, its partitions moved, and a survivor still sending a batch of a
    partition that went to another worker crashed with ProducerFenced."""
    async def scenario() -> BatchConsumer:
        c, log = consumer()

        def rebalance() -> None:  # our flow stops and a new generation begins while the batch is out
            c.flow_active = False
            c.app.consumer_generation_id = 2

        c.transactions.producer._transaction_producers["g-1-0"] = FencedDuringRebalance("g-1-0", log, rebalance)
        await c._send_and_ack([(TP(RAW, 0), 9, trades(1))], generation=1)
        return c

    assert asyncio.run(scenario())._done == {}  # not acknowledged: the partition's next owner reads it again


def test_a_producer_fenced_while_its_partition_is_still_ours_is_a_crash():
    async def scenario() -> None:
        c, log = consumer()
        c.transactions.producer._transaction_producers["g-1-0"] = FencedDuringRebalance("g-1-0", log, lambda: None)
        await c._send_and_ack([(TP(RAW, 0), 9, trades(1))], generation=1)

    with pytest.raises(ProducerFenced):
        asyncio.run(scenario())


def test_a_commit_fenced_by_the_partition_s_next_owner_is_dropped_instead_of_crashing():
    class FencedCommit(Producer):
        async def send_offsets_to_transaction(self, offsets: dict, group_id: str) -> None:
            c.flow_active = False  # the rebalance that moved the partition is under way
            raise ProducerFenced()

    crashed: list = []

    async def scenario() -> bool:
        await c._send_and_ack([(TP(RAW, 0), 9, trades(1))], generation=1)
        c.transactions.producer._transaction_producers["g-1-0"] = FencedCommit("g-1-0", log)
        return await c.force_commit()

    c, log = consumer()

    async def crash(exc: BaseException) -> None:
        crashed.append(exc)

    c.app.crash = crash
    assert asyncio.run(scenario()) is False and crashed == [] and c._committed == {}


class Broker:
    """The transaction coordinator's one fact that matters here: each transactional id's current producer epoch."""

    def __init__(self) -> None:
        self.epochs: dict[str, int] = defaultdict(int)


class TransactionalProducer:
    """An AIOKafkaProducer stand-in: ``start`` is InitProducerId (a new epoch, fencing the older ones),
    ``begin_transaction`` is client-side only and asserts its state as aiokafka does, a send is checked
    against the coordinator's epoch."""

    def __init__(self, broker: Broker, transactional_id: str) -> None:
        self.broker, self.transactional_id, self.epoch, self.state = broker, transactional_id, None, "UNINITIALIZED"

    async def start(self) -> None:
        self.broker.epochs[self.transactional_id] += 1
        self.epoch, self.state = self.broker.epochs[self.transactional_id], "READY"

    async def stop(self) -> None:
        self.state = "STOPPED"

    async def begin_transaction(self) -> None:
        assert self.state == "READY", f"Invalid state transition {self.state} -> IN_TRANSACTION"
        self.state = "IN_TRANSACTION"

    def fenced(self) -> bool:
        return self.epoch != self.broker.epochs[self.transactional_id]


@pytest.fixture
def eos_app():
    """A real streamapp.eos.App (exactly once) whose transactional producers are TransactionalProducers."""
    app = App("g", broker="kafka://127.0.0.1:1", processing_guarantee="exactly_once")
    broker = Broker()
    driver = app.producer
    driver._producer = object()  # Faust's begin_transaction only checks that its own producer started
    driver._new_producer = lambda transactional_id=None: TransactionalProducer(broker, transactional_id)
    app.assignor.group_for_topic = lambda topic: 1
    app.assignor.standbys = set()
    app.assignor.is_standby = lambda tp: tp in app.assignor.standbys
    yield app, broker
    faust_aiokafka.Producer._trn_locks.clear()
    faust_aiokafka.Producer._transaction_producers.clear()


def test_a_partition_that_comes_back_gets_a_producer_of_this_generation_not_the_fenced_one(eos_app):
    """Seen in the fleet test: a survivor crashed with ProducerFenced on a partition it owned. It had owned
    that partition before a worker joined; the join moved it away, but Faust's assignor made the survivor its
    standby, and Faust stops only the producers of revoked partitions that are not standbys. The new owner's
    producer fenced the one the survivor kept; when the kill brought the partition back, Faust reused it."""
    app, broker = eos_app
    transactions, producers = app.consumer.transactions, app.producer._transaction_producers
    p0, p2 = TP(RAW, 0), TP(RAW, 2)

    async def scenario() -> None:
        await transactions.on_rebalance({p0, p2}, set(), {p0, p2})  # generation 1: ours
        app.assignor.standbys = {p0}  # generation 2: a worker joined and owns p0, we are its standby
        await transactions.on_rebalance({p2}, {p0}, set())
        broker.epochs["g-1-0"] += 1  # the new owner starts its producer for p0
        app.assignor.standbys = set()  # generation 3: that worker was killed, p0 is ours again
        await transactions.on_rebalance({p0, p2}, set(), {p0})

    asyncio.run(scenario())
    assert sorted(producers) == ["g-1-0", "g-1-2"]
    assert [tid for tid, producer in producers.items() if producer.fenced()] == []
    assert all(producer.state == "IN_TRANSACTION" for producer in producers.values())


def test_output_goes_to_the_partition_aiokafka_s_send_would_choose():
    async def scenario() -> list:
        c, log = consumer()
        keys = [b"BTC/USDT", b"ETH/USDT", b"SOL/USDT", b"DOGE/USDT"]
        await c._send_and_ack([(TP(RAW, 0), 3, [Outgoing(OUT, k, b"v", []) for k in keys])], generation=1)
        return log

    log = asyncio.run(scenario())
    every = [0, 1, 2]
    expected = defaultdict(int)
    for key in [b"BTC/USDT", b"ETH/USDT", b"SOL/USDT", b"DOGE/USDT"]:
        expected[DefaultPartitioner()(key, every, every)] += 1
    assert {e[3]: e[4] for e in log} == dict(expected)


def test_every_private_faust_name_eos_relies_on_exists_in_the_installed_faust():
    def declared(cls: type, name: str) -> bool:
        return hasattr(cls, name) or any(name in getattr(k, "__annotations__", {}) for k in cls.__mro__)

    missing = [f"{cls.__qualname__}.{name}" for cls, name in FAUST_PRIVATE_NAMES if not declared(cls, name)]
    assert missing == []
