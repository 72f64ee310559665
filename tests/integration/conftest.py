"""Integration fixtures: the real local stack, started once per test run.

Services that were not running before the session are started here and stopped
at its end; a stack a developer already runs is used and left alone.
"""

from __future__ import annotations

import pytest

from streamapp import migrations
from streamapp.clients.clickhouse import connect
from streamapp.settings import Settings, get_settings
from streamapp.stack import services
from tests.integration.brokers import PrivateBroker


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
def broker(tmp_path):
    """A private broker a test may stop and restart (see tests/integration/brokers.py)."""
    private = PrivateBroker(tmp_path)
    private.start()
    yield private
    private.stop()
