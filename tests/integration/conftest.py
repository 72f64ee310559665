"""Integration fixtures: the real local stack, started once per test run.

Services that were not running before the session are started here and stopped
at its end; a stack a developer already runs is used and left alone.
"""

from __future__ import annotations

import os
import uuid

import pytest

from streamapp import migrations
from streamapp.clients.clickhouse import connect
from streamapp.settings import Settings, get_settings
from streamapp.stack import services
from tests.integration.brokers import PrivateBroker

# Feeds and workers fetch the exchanges' symbol lists at start. Tests talk to 127.0.0.1 only: unless
# a test points them at a simulator, they find nothing listening here and use the bundled lists
# (which hold every symbol the tests' frames carry), never the live exchanges.
for _exchange in ("BINANCE", "KRAKEN", "BINANCEUSDM"):
    os.environ.setdefault(f"STREAMAPP_{_exchange}_REST_URL", "http://127.0.0.1:9")


@pytest.fixture(scope="session")
def stack() -> Settings:
    settings = get_settings()
    already = {row.name for row in services.status(settings) if row.running}
    services.up(settings)
    yield settings
    for svc in reversed(services.stack_services(settings)):
        if svc.name not in already:
            services.stop(settings, svc)


@pytest.fixture(scope="session")
def migrated(stack) -> Settings:
    """The stack's warehouse with every migration in streamapp/sql/ applied (`streamapp db migrate`)."""
    client = connect(stack)
    for migration in migrations.pending(client, migrations.discover()):
        migrations.apply(client, stack, migration)
    return stack


@pytest.fixture
def scratch_database(stack):
    """A database of its own on the stack's warehouse; its Kafka tables point at a closed port (no consumer)."""
    name = f"upgrade_{uuid.uuid4().hex[:8]}"
    admin = connect(stack)
    admin.command(f"CREATE DATABASE {name}")
    settings = stack.model_copy(update={"clickhouse_url": f"{stack.clickhouse_url.rstrip('/')}/{name}",
                                        "clickhouse_kafka_broker_list": "127.0.0.1:9"})
    yield settings
    admin.command(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def broker(tmp_path):
    """A private broker a test may stop and restart (see tests/integration/brokers.py)."""
    private = PrivateBroker(tmp_path)
    private.start()
    yield private
    private.stop()
