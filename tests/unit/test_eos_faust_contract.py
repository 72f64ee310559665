"""What streamapp/eos.py relies on inside faust-streaming, checked against the installed Faust.

eos.py reaches into private faust-streaming names (``eos.FAUST_PRIVATE_NAMES``,
checked in tests/unit/test_eos.py) and relies on Faust committing only through
the consumer's ``force_commit``, which ``BatchConsumer`` overrides. Each test below
names one such assumption; when a Faust upgrade changes it, the test fails saying
what changed, and eos.py must be re-checked against the new Faust (and the pin in
setup.cfg moved) before the upgrade is taken. Real Faust objects throughout;
nothing connects anywhere.
"""

from __future__ import annotations

import ast
import asyncio
import re
from importlib import metadata
from pathlib import Path

import faust
import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka


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


def test_every_commit_goes_through_the_consumers_force_commit(app):
    """``BatchConsumer.force_commit`` is where eos commits: every commit must reach it through the instance."""
    consumer = app.consumer
    reached = asyncio.Event()

    async def force_commit(*args, **kwargs) -> bool:
        reached.set()
        return False

    consumer.force_commit = force_commit

    async def scenario() -> bool:
        await asyncio.wait_for(consumer.commit(), 5)
        return reached.is_set()

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
