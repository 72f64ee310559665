"""What streamapp/eos.py relies on inside faust-streaming, checked against the installed Faust.

eos.py reaches into private faust-streaming names and two undocumented
orderings. Each test below names one of them; when a Faust upgrade changes it,
the test fails saying what changed, and eos.py must be re-checked against the
new Faust (and the pin in setup.cfg moved) before the upgrade is taken.
Real Faust objects throughout; nothing connects anywhere.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import textwrap
from importlib import metadata
from pathlib import Path

import faust
import pytest
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streamapp.eos import guard_commits

SETUP_CFG = Path(__file__).resolve().parents[2] / "setup.cfg"
RECHECK = "re-check streamapp/eos.py against this Faust before moving the faust-streaming pin in setup.cfg"


def pinned_faust() -> str:
    match = re.search(r"^\s*faust-streaming==([\w.]+)\s*$", SETUP_CFG.read_text(), re.M)
    assert match, "setup.cfg must pin faust-streaming exactly (==): streamapp/eos.py uses its private names"
    return match.group(1)


@pytest.fixture
def app():
    """A real exactly-once Faust app; the assignor maps every topic to group 0 (no rebalance ran)."""
    app = faust.App("eos-contract", broker="kafka://127.0.0.1:1", processing_guarantee="exactly_once")
    app.assignor.group_for_topic = lambda topic: 0
    app.assignor.is_standby = lambda tp: False
    yield app
    faust_aiokafka.Producer._trn_locks.clear()
    faust_aiokafka.Producer._transaction_producers.clear()


def test_the_installed_faust_is_the_pinned_version():
    installed = metadata.version("faust-streaming")
    assert installed == pinned_faust(), f"faust-streaming {installed} is installed, setup.cfg pins {pinned_faust()}: {RECHECK}"


def test_the_private_names_eos_uses_exist(app):
    transactions = app.consumer.transactions
    assert isinstance(transactions, faust_consumer.TransactionManager), f"app.consumer.transactions changed: {RECHECK}"
    assert callable(getattr(transactions, "_tps_to_transactional_ids", None)), (
        f"TransactionManager._tps_to_transactional_ids is gone: {RECHECK}")
    driver = transactions.producer
    for name in ("_trn_locks", "_transaction_producers"):
        assert isinstance(getattr(driver, name, None), dict), f"the aiokafka Producer's {name} dict is gone: {RECHECK}"
    assert inspect.iscoroutinefunction(type(app.consumer).force_commit), f"Consumer.force_commit changed: {RECHECK}"


def test_output_joins_the_transaction_that_commits_its_source_offset(app):
    """eos sends through ``_tps_to_transactional_ids({tp})``; the commit must use that same transaction."""
    transactions = app.consumer.transactions
    committed: dict[str, dict] = {}

    async def commit_transactions(by_transactional_id, group_id, start_new_transaction=True):
        committed.update(by_transactional_id)

    transactions.producer.commit_transactions = commit_transactions
    tp = TP("market.crypto.trades.binance.raw", 2)
    [ours] = transactions._tps_to_transactional_ids({tp})
    asyncio.run(transactions.commit({tp: 10}))
    assert committed == {ours: {tp: 10}}, f"Faust commits {tp}'s offset in {list(committed)}, eos sends in {ours}: {RECHECK}"


def test_a_commit_waits_for_its_transaction_lock(app):
    """eos holds ``_trn_locks[id]`` while it sends; Faust's commit of that transaction must wait for it."""
    driver = app.consumer.transactions.producer
    steps: list[str] = []

    class TransactionProducer:
        async def send_offsets_to_transaction(self, offsets, group_id):
            steps.append("offsets")

        async def commit_transaction(self):
            steps.append("commit")

        async def begin_transaction(self):
            steps.append("begin")

    async def scenario() -> None:
        driver._transaction_producers["t-0"] = TransactionProducer()
        lock = driver._trn_locks["t-0"] = asyncio.Lock()
        async with lock:
            commit = asyncio.create_task(driver.commit_transactions({"t-0": {TP("raw", 0): 5}}, "group"))
            await asyncio.sleep(0.05)
            steps.append("batch sent")
        await asyncio.wait_for(commit, 5)

    asyncio.run(scenario())
    assert steps == ["batch sent", "offsets", "commit", "begin"], f"commit_transactions ignores _trn_locks: {RECHECK}"


def test_every_commit_goes_through_the_consumers_force_commit(app):
    """``guard_commits`` wraps ``force_commit`` on the instance: a commit must look it up there."""
    consumer = app.consumer
    lock = guard_commits(consumer)

    async def scenario() -> bool:
        async with lock:
            commit = asyncio.create_task(consumer.commit())
            await asyncio.sleep(0.05)
            blocked = not commit.done()
        await asyncio.wait_for(commit, 5)
        return blocked

    assert asyncio.run(scenario()), f"Consumer.commit no longer calls self.force_commit: {RECHECK}"
    # No other path commits: each step down to the transaction is called from one place only.
    callers = {"_commit_tps": {"force_commit"}, "_commit_offsets": {"_commit_tps"},
               "commit_transactions": {"commit"}, "force_commit": {"commit"}}
    found = {name: set() for name in callers}
    package = Path(faust.__file__).parent
    for path in package.rglob("*.py"):
        if "types" in path.relative_to(package).parts:
            continue
        for func in ast.walk(ast.parse(path.read_text())):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(func):
                    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                            and node.func.attr in callers):
                        found[node.func.attr].add(func.name)
    assert found == callers, f"Faust commits along another path now ({found}, was {callers}): {RECHECK}"


def awaits_before(statements: list[ast.stmt], stop: ast.stmt) -> list[str]:
    """The ``await`` expressions among ``statements`` before ``stop``."""
    seen = []
    for statement in statements:
        if statement is stop:
            return seen
        seen += [ast.unparse(n) for n in ast.walk(statement) if isinstance(n, ast.Await)]
    raise AssertionError("statement not found")


def test_take_events_acks_a_batch_right_after_the_body_without_yielding():
    """The batch's acks follow the agent's body with no suspension, so a guarded commit sees them."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(faust.Stream.take_events)))
    [handler] = [n for n in ast.walk(tree) if isinstance(n, ast.Try)
                 and any(isinstance(s, ast.Expr) and isinstance(s.value, ast.Yield) for s in n.body)]
    [ack_loop] = [s for s in handler.finalbody if isinstance(s, ast.For) and "self.ack(" in ast.unparse(s)]
    assert awaits_before(handler.finalbody, ack_loop) == [], f"take_events awaits before acking a batch: {RECHECK}"
    assert [ast.unparse(n) for n in ast.walk(ack_loop) if isinstance(n, ast.Await)] == ["await self.ack(event)"], (
        f"take_events' ack loop changed: {RECHECK}")
    ack = ast.parse(textwrap.dedent(inspect.getsource(faust.Stream.ack)))
    assert not [n for n in ast.walk(ack) if isinstance(n, ast.Await)], f"Stream.ack may suspend now: {RECHECK}"
