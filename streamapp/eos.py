"""Exactly-once batch processing inside the Faust app: each fetched batch straight to its agent's transform.

**Why batches.** Faust hands a stream one event at a time: its drain loop awaits a
``wait_first`` per message, then ``Conductor.on_message``, builds an ``Event``,
queues it for the stream and acknowledges it on its own, at 60–280 µs a record
here; the normalizer spends ~12 µs on its own work. :class:`App` keeps Faust's
worker, consumer thread, rebalancing, commits and transactions, and replaces only
the drain loop (:meth:`BatchConsumer._drain_messages`): every batch aiokafka
fetches goes, per source partition, to the transform its agent registered with
:func:`process_batches`, and the output is sent as one aiokafka batch per
destination partition. Agents keep their declaration (``@app.agent(topic)``, so
Faust subscribes, assigns and rebalances their topics as before) and call
``process_batches(stream, transform)`` instead of iterating the stream. Every
topic an agent of the app subscribes to is consumed this way: a batch for a topic
whose agent has not registered yet (it may still be starting) waits for it.

**Why exactly once.** faust-streaming's ``exactly_once`` keeps a transactional
producer per assigned source partition and commits each source partition's
offsets through it, but ``Topic.send`` picks the producer by the *destination*
partition (``TransactionManager.send``), so output and offsets land in different
transactions and a crash duplicates output even for ``read_committed`` readers
(faust-streaming issues #517, #177; 468 duplicates after one SIGKILL here). Here:

* each source partition's output is sent through *that* partition's producer,
  holding its transaction's lock (``_trn_locks``), and the partition's offset is
  marked done before the lock is released;
* a commit (:meth:`BatchConsumer.force_commit`: periodic, on rebalance, on stop)
  reads each partition's done offset *under that transaction's lock*, then sends
  it to the transaction and ends it. Faust's own commit reads every offset first
  and waits for the locks after, so a batch sent in between was committed with
  older offsets (90 duplicates after a SIGKILL in one CI run). The transactions
  end concurrently, not one after the other;
* a batch fetched while the flow is stopped (a rebalance) is not transformed, and the consumer
  seeks back to the committed offsets, as Faust's own ``getmany`` does: the fetch may have
  returned after the rebalance's own seek, and dropping it later would leave the consumer past it;
* a batch fetched before or during a rebalance, or whose partition's producer is gone,
  not started yet or stopped meanwhile (Faust stops a revoked partition's producer without its lock),
  is dropped unacknowledged: the partition's next owner reads it again from the
  committed offset, and the stopped producer's open transaction is aborted when
  that owner starts its own;
* each rebalance starts every transactional producer afresh (:class:`TransactionManager`):
  Faust would reuse one it kept while the partition's owner in between fenced it.

The send of a batch runs as its own task, so cancelling the fetcher (on stop)
never splits a send from its offsets; one batch is in flight at a time, so a
partition's records keep their order.

**Faust's private surface.** faust-streaming is pinned (``setup.cfg``); these are
all the private names used, listed in :data:`FAUST_PRIVATE_NAMES` and checked
against the installed Faust by ``tests/unit/test_eos.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import faust
from aiokafka.errors import ProducerFenced
from aiokafka.partitioner import DefaultPartitioner
from faust.transport.drivers import aiokafka as faust_aiokafka

from streamapp import coordinator_retry

log = logging.getLogger(__name__)

#: Every private Faust name this module relies on, as (class, attribute): what breaks if one changes.
FAUST_PRIVATE_NAMES: tuple[tuple[type, str], ...] = (
    (faust.App, "_new_transport"),  # App builds our Transport (hence BatchConsumer) here
    (faust_aiokafka.Consumer, "_drain_messages"),  # the per-message loop BatchConsumer replaces
    (faust_aiokafka.Consumer, "_wait_next_records"),  # one fetched batch: {TP: [ConsumerRecord]}
    (faust_aiokafka.Consumer, "_read_offset"),  # last offset read per TP (a seek sets the next one)
    (faust.transport.consumer.TransactionManager, "_tps_to_transactional_ids"),  # a TP's transactional id
    (faust_aiokafka.Producer, "_trn_locks"),  # per transactional id; Faust's commit_transactions takes them too
    (faust_aiokafka.Producer, "_transaction_producers"),  # transactional id -> AIOKafkaProducer (none: revoked)
)
# Public Faust methods BatchConsumer and TransactionManager override (Faust calls them, so their signatures
# and roles are relied on too): Consumer.force_commit(topics, start_new_transaction) is every commit (periodic,
# rebalance, stop); Consumer.on_partitions_revoked(revoked) contains the rebalance's commit;
# TransactionManager.on_rebalance(assigned, revoked, newly_assigned) starts the producers of a generation
# (Producer.stop_transaction(transactional_id) stops one).
# Consumer.perform_seek() seeks every assigned partition to its committed offset (and resets _read_offset).
# Public attributes read: App.consumer_generation_id, Consumer.flow_active, Consumer.transactions,
# Monitor.stream_inbound_time (Faust's livelock detector), Monitor.on_tp_commit.


class Record(Protocol):
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


#: An agent's work: one source partition's fetched records (aiokafka ``ConsumerRecord``s,
#: in offset order) -> the records to produce for them, all in that partition's transaction.
Transform = Callable[[Sequence[Any]], Iterable[Record]]


async def process_batches(stream: Any, transform: Transform) -> None:
    """Run ``transform`` on every fetched batch of ``stream``'s topics, for as long as the agent runs.

    Call it from an agent instead of iterating the stream. ``transform`` must not
    await (it runs on the consumer's drain loop); it may raise only for bugs: an
    exception crashes the worker (nothing is acknowledged, so nothing is lost).
    """
    consumer = stream.app.consumer
    if not isinstance(consumer, BatchConsumer):
        raise TypeError(
            f"the app's consumer is a {type(consumer).__name__}; batch agents need streamapp.eos.App "
            "(it installs BatchConsumer)"
        )
    names = sorted(stream.channel.topics)
    consumer.register_transform(names, transform)
    try:
        await asyncio.Event().wait()  # until the agent is stopped (cancelled)
    finally:
        consumer.unregister_transform(names, transform)


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer whose drain loop hands whole batches to the agents' transforms,
    and whose commits put each source partition's offsets into that partition's transaction."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._transforms: dict[str, Transform] = {}
        self._registered = asyncio.Condition()
        self._done: dict[Any, int] = {}  # TP -> next offset to commit: every record before it sent in its transaction
        self._committed: dict[Any, int] = {}  # TP -> last offset committed here
        self._partitions: dict[str, list[int]] = {}  # destination topic -> its partitions
        self._partition_of: dict[tuple[str, bytes | None], int] = {}  # murmur2 is pure Python: cache it

    def register_transform(self, topics: Iterable[str], transform: Transform) -> None:
        for topic in topics:
            if self._transforms.get(topic, transform) is not transform:
                raise ValueError(f"topic {topic!r} already has a batch transform; one agent per topic")
            self._transforms[topic] = transform
        asyncio.ensure_future(self._notify_registered())

    def unregister_transform(self, topics: Iterable[str], transform: Transform) -> None:
        for topic in topics:
            if self._transforms.get(topic) is transform:
                del self._transforms[topic]

    async def _notify_registered(self) -> None:
        async with self._registered:
            self._registered.notify_all()

    async def _transform_for(self, topic: str) -> Transform:
        """The agent's transform for ``topic``, waiting for an agent still starting to register it.

        A topic no agent consumes (Faust's assignor topic) gets an empty transform: its
        records are acknowledged and dropped, as Faust's conductor does with them.
        """
        transform = self._transforms.get(topic)
        waited = 0.0
        while transform is None:
            if not any(topic in agent.channel.topics for agent in self.app.agents.values()):
                return _no_output
            async with self._registered:
                try:
                    await asyncio.wait_for(self._registered.wait(), timeout=10.0)
                except asyncio.TimeoutError:
                    waited += 10.0
                    log.warning("records of %s wait %.0f s for a batch transform: its agent has not called "
                                "streamapp.eos.process_batches (still starting, or it iterates its stream)",
                                topic, waited)
            transform = self._transforms.get(topic)
        return transform

    async def _drain_messages(self, fetcher: Any) -> None:  # Faust's Fetcher runs this as its task
        """Fetch and transform a batch while the previous one is sent (Faust's loop: a message at a time)."""
        sending: asyncio.Future | None = None
        try:
            while not (self.should_stop or fetcher.should_stop):
                records, _active = await self._wait_next_records(1.0)
                if not records or self.should_stop:
                    await asyncio.sleep(0)
                    continue
                if not self.flow_active:
                    # Fetched across a rebalance. Its seek to the committed offsets may be done already and
                    # these records read from there: dropped at the send, with the consumer past them, they
                    # would be lost. As Faust's own getmany does: nothing is transformed, and the consumer
                    # goes back to the committed offsets (nothing is marked done while the flow is stopped).
                    if sending is not None:
                        await sending
                        sending = None
                    await self.perform_seek()
                    log.info("rebalance under way: %d records fetched meanwhile will be read again from the "
                             "committed offsets", sum(len(batch) for batch in records.values()))
                    continue
                generation = self.app.consumer_generation_id
                work = await self._transform(records)
                if sending is not None:
                    await sending  # one batch in flight: partitions keep their order
                    sending = None
                if work:
                    # Shielded: a cancellation (the fetcher stops on shutdown) must not split a send from its ack.
                    sending = asyncio.ensure_future(self._send_and_ack(work, generation))
                    await asyncio.sleep(0)  # let it take its locks before the next fetch
            if sending is not None:
                await asyncio.shield(sending)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if sending is not None and not sending.done():
                await asyncio.shield(sending)
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise

    async def _transform(self, records: Mapping[Any, Sequence[Any]]) -> list[tuple[Any, int, list[Record]]]:
        """Each source partition's output: (TP, its last offset, records to produce)."""
        work = []
        read_offset = self._read_offset
        for tp, batch in records.items():
            r_offset = read_offset[tp]
            if r_offset is not None and batch and batch[0].offset < r_offset:  # read already (Faust drops these too)
                batch = [record for record in batch if record.offset >= r_offset]
            if not batch:
                continue
            transform = await self._transform_for(tp.topic)
            last = batch[-1].offset
            read_offset[tp] = last
            work.append((tp, last, list(transform(batch))))
        return work

    async def _send_and_ack(self, work: list[tuple[Any, int, list[Record]]], generation: int) -> None:
        transactions = self.transactions  # Faust's TransactionManager (exactly_once only)
        driver = transactions.producer
        by_transaction: dict[str, list[tuple[Any, int, list[Record]]]] = {}
        for item in work:
            [transactional_id] = transactions._tps_to_transactional_ids({item[0]})
            by_transaction.setdefault(transactional_id, []).append(item)
        for transactional_id, items in sorted(by_transaction.items()):
            if transactional_id not in driver._trn_locks and not self.flow_active:
                # Fetched in a rebalance (the generation id changes before Faust starts the producers) for
                # a partition whose producer is still starting: Faust makes its lock only then. Still
                # ours and no lock, flow running: the KeyError below crashes the worker (nothing acked).
                log.info("%s: rebalance under way (producer starting); %d partition batches dropped, read again "
                         "from the committed offset", transactional_id, len(items))
                continue
            async with driver._trn_locks[transactional_id]:
                producer = driver._transaction_producers.get(transactional_id)
                assignment = self.assignment()
                owned = (self.flow_active and self.app.consumer_generation_id == generation
                         and all(tp in assignment for tp, _, _ in items))
                if producer is None and owned:
                    # Dropping it would let the next batches' offsets commit past these records.
                    raise RuntimeError(f"{transactional_id}: no transactional producer for partitions this "
                                       f"worker owns ({sorted(str(tp) for tp, _, _ in items)}); stopping "
                                       "unacknowledged, their next owner reads them from the committed offset")
                if producer is None or not owned:
                    log.info("%s: rebalance under way; %d partition batches dropped, their owners read them again",
                             transactional_id, len(items))
                    continue
                records = [record for _, _, out in items for record in out]
                try:
                    sent = await self._while_owned(transactional_id, producer, self._send_batched(producer, records),
                                                   "a batch's send")
                except ProducerFenced:
                    # The partition's next owner started its producer under our transactional id (the
                    # ids are per partition), which aborts our transaction: what this batch sent goes
                    # with it, and the owner reads the batch again. Fenced while still ours: a crash.
                    if (self.flow_active and self.app.consumer_generation_id == generation
                            and all(tp in self.assignment() for tp, _, _ in items)):
                        raise
                    log.info("%s: fenced by the partition's next owner during a batch's send; dropped",
                             transactional_id)
                    continue
                if not sent:
                    continue
                # Done right after the sends, under the transaction's lock: a commit takes that lock
                # before it reads these offsets, so it commits all of this output with them, or neither.
                for tp, last, _ in items:
                    self._done[tp] = last + 1
        now = time.monotonic()
        inbound = self.app.monitor.stream_inbound_time  # Faust's livelock detector reads it
        for tp, _, _ in work:
            inbound[tp] = now

    async def _while_owned(self, transactional_id: str, producer: Any, work: Awaitable[None], what: str) -> bool:
        """Await ``work`` on ``producer``; False if the producer was stopped meanwhile (its partition revoked).

        Faust stops a revoked partition's producer without taking its lock, and an
        aiokafka producer stopped under a pending call (waiting for metadata, for room
        in its accumulator, for the coordinator) never wakes it: watch for the stop
        instead of waiting forever. The transaction of a stopped producer is aborted
        when the partition's next owner starts its producer, so what was sent goes with it.
        """
        driver = self.transactions.producer
        task = asyncio.ensure_future(work)
        task.add_done_callback(_retrieve)  # if it outlives us (dropped, or cancelled on shutdown)
        while not task.done():
            await asyncio.wait({task}, timeout=0.5)
            if not task.done() and driver._transaction_producers.get(transactional_id) is not producer:
                task.cancel()
                log.info("%s: producer stopped (partition revoked) during %s; dropped", transactional_id, what)
                return False
        try:
            task.result()
        except Exception as exc:
            if driver._transaction_producers.get(transactional_id) is not producer:  # stopped under us
                log.info("%s: producer stopped (partition revoked) during %s (%r); dropped",
                         transactional_id, what, exc)
                return False
            raise  # a crash: nothing more is acknowledged or committed
        return True

    async def _send_batched(self, producer: Any, records: list[Record]) -> None:
        """Send records as one aiokafka batch per topic-partition (per-record ``send`` costs ~10x more).

        Partitions are chosen as ``send`` would: aiokafka's default (murmur2 of the key,
        Java-compatible), so a symbol's records keep one partition whichever path wrote them.
        """
        by_partition: dict[tuple[str, int], list[Record]] = {}
        partition_of = self._partition_of
        for record in records:
            topic = record.topic
            partition = partition_of.get((topic, record.key))
            if partition is None:
                every = self._partitions.get(topic)
                if every is None:  # once per process: partitions added later count after a restart
                    every = self._partitions[topic] = sorted(await producer.partitions_for(topic))
                partition = partition_of[(topic, record.key)] = _PARTITIONER(record.key, every, every)
            group = by_partition.get((topic, partition))
            if group is None:
                group = by_partition[(topic, partition)] = []
            group.append(record)
        for (topic, partition), group in by_partition.items():
            batch = producer.create_batch()
            for record in group:
                if batch.append(key=record.key, value=record.value, timestamp=None, headers=record.headers) is None:
                    delivery = await producer.send_batch(batch, topic, partition=partition)  # full: ship it
                    delivery.add_done_callback(_retrieve)
                    batch = producer.create_batch()
                    batch.append(key=record.key, value=record.value, timestamp=None, headers=record.headers)
            delivery = await producer.send_batch(batch, topic, partition=partition)
            # A failed delivery fails the transaction's commit (a crash, nothing committed);
            # a fenced producer's deliveries fail too, with nobody left to read them.
            delivery.add_done_callback(_retrieve)

    async def force_commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        """Commit each source partition's done offsets in its own transaction, all transactions at once.

        Faust's commit reads every partition's offsets first and then ends the
        transactions one after the other; here each transaction reads its
        partitions' offsets under its own lock (the lock :meth:`_send_and_ack` holds),
        and the transactions end concurrently (one round of broker round trips, not one per partition).
        """
        assignment = self.assignment()
        transactions = self.transactions
        by_transaction: dict[str, list[Any]] = {}
        for tp in self._done:
            if tp in assignment and (topics is None or tp in topics or tp.topic in topics):
                [transactional_id] = transactions._tps_to_transactional_ids({tp})
                by_transaction.setdefault(transactional_id, []).append(tp)
        if not by_transaction:
            return False
        results = await asyncio.gather(*(
            self._commit_transaction(transactional_id, tps, start_new_transaction)
            for transactional_id, tps in by_transaction.items()
        ))
        return any(results)

    async def _commit_transaction(self, transactional_id: str, tps: list[Any], start_new_transaction: bool) -> bool:
        driver = self.transactions.producer
        async with driver._trn_locks[transactional_id]:
            producer = driver._transaction_producers.get(transactional_id)
            offsets = {tp: self._done[tp] for tp in tps if tp in self._done}
            offsets = {tp: o for tp, o in offsets.items() if self._committed.get(tp) != o}
            if producer is None or not offsets:
                return False
            try:
                if not await self._while_owned(transactional_id, producer, self._end_transaction(
                        producer, offsets, start_new_transaction), "a commit"):
                    return False
            except ProducerFenced as exc:
                if not self.flow_active or any(tp not in self.assignment() for tp in offsets):
                    # A rebalance gave the partition to another worker, whose producer aborted this
                    # transaction: its offsets and output go together, and the owner reads them again.
                    log.info("%s: fenced by the partition's next owner during a commit; dropped", transactional_id)
                    return False
                log.warning("%s: producer fenced: %s", transactional_id, exc)  # still ours: as Faust does, crash
                await self.app.crash(exc)
                return False
        self._committed.update(offsets)
        self.app.monitor.on_tp_commit(offsets)
        return True

    async def _end_transaction(self, producer: Any, offsets: dict, start_new_transaction: bool) -> None:
        await producer.send_offsets_to_transaction(offsets, self.app.conf.id)
        await producer.commit_transaction()
        if start_new_transaction:
            await producer.begin_transaction()

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        # Faust stops the flow and commits (through force_commit) first, so what was done on the
        # revoked partitions is committed in their transactions before their producers stop;
        # only then is it forgotten, and a batch still arriving for them is dropped (new generation).
        await super().on_partitions_revoked(revoked)
        for tp in revoked:
            self._done.pop(tp, None)
            self._committed.pop(tp, None)


_PARTITIONER = DefaultPartitioner()


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.debug("%r ended with %r", future, future.exception())


def _no_output(records: Sequence[Any]) -> list[Record]:
    return []


class TransactionManager(faust.transport.consumer.TransactionManager):
    """Faust's transaction manager, except that each rebalance starts every transactional producer afresh.

    Faust stops the producers of revoked partitions only, and not even all of them:
    its assignor makes a partition's previous owner the partition's *standby* (tables
    or not), and ``_tps_to_transactional_ids`` skips standbys. When such a partition
    came back, Faust reused the producer it had kept, which the partition's owner
    in between had fenced (its InitProducerId bumped the epoch): the next send
    crashed the worker with ``ProducerFenced``. A member the group expelled and took
    back would reuse fenced producers the same way. So every producer is stopped
    first, and Faust starts one per assigned partition (InitProducerId): each
    generation sends with producers of its own, and whatever an earlier one left
    open (this process's or anyone's) is aborted. Batches of the earlier generation
    are dropped already (:meth:`BatchConsumer._send_and_ack`); the flow is stopped
    until the rebalance ends.
    """

    async def on_rebalance(self, assigned: set[Any], revoked: set[Any], newly_assigned: set[Any]) -> None:
        driver = self.producer
        for transactional_id in sorted(driver._transaction_producers):
            await driver.stop_transaction(transactional_id)
        await super().on_rebalance(assigned, revoked, newly_assigned)


class Transport(faust_aiokafka.Transport):
    Consumer = BatchConsumer
    TransactionManager = TransactionManager


class App(faust.App):
    """A Faust app whose agents consume through :func:`process_batches`."""

    def _new_transport(self) -> Transport:
        coordinator_retry.install()  # its transactional producers ride out a broker restart
        return Transport(self.conf.broker_consumer, self)
