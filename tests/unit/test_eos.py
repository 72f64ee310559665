"""streamapp.eos.guard_commits: a commit that starts while a batch is in flight reads the batch's offsets.

The consumer here is a stand-in with Faust's shape (``force_commit`` reads the
acknowledged offset first, then waits for the transaction); the thing under test
is the guard, which must hold back the read until the batch is sent and acked.
The whole path with Faust, the broker and a SIGKILL is
tests/integration/test_normalizer.py.
"""

from __future__ import annotations

import asyncio

from streamapp.eos import guard_commits


class Consumer:
    def __init__(self) -> None:
        self.acked = 0
        self.transaction_lock = asyncio.Lock()
        self.committed: list[int] = []

    async def force_commit(self) -> bool:
        offset = self.acked  # Faust reads the acknowledged offsets first ...
        async with self.transaction_lock:  # ... then waits for the transaction
            self.committed.append(offset)
        return True


async def a_commit_during_a_batch(guarded: bool) -> list[int]:
    consumer = Consumer()
    output_lock = guard_commits(consumer) if guarded else asyncio.Lock()
    sending = asyncio.Event()

    async def batch() -> None:
        async with output_lock, consumer.transaction_lock:
            sending.set()
            await asyncio.sleep(0.01)  # records on their way to the broker
        consumer.acked = 100  # acknowledged right after, no await in between

    task = asyncio.create_task(batch())
    await sending.wait()
    await consumer.force_commit()
    await task
    return consumer.committed


def test_unguarded_the_commit_ends_the_transaction_with_stale_offsets():
    # The failure the guard exists for: output of offsets < 100 committed with offset 0.
    assert asyncio.run(a_commit_during_a_batch(guarded=False)) == [0]


def test_guarded_the_commit_waits_for_the_batch_and_its_acks():
    assert asyncio.run(a_commit_during_a_batch(guarded=True)) == [100]


def test_the_guard_is_installed_once():
    consumer = Consumer()
    original = consumer.force_commit
    lock = guard_commits(consumer)
    wrapped = consumer.force_commit
    assert guard_commits(consumer) is lock and consumer.force_commit is wrapped and wrapped is not original
