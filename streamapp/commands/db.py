"""``streamapp db``: the warehouse schema (migrations in streamapp/sql/)."""

from __future__ import annotations

import click

from streamapp import migrations
from streamapp.clients.clickhouse import connect
from streamapp.commands.stack import stack_settings


@click.group()
def db() -> None:
    """Apply and inspect the ClickHouse migrations in streamapp/sql/ (same files for the local
    warehouse and a ClickHouse server)."""


@db.command()
def migrate() -> None:
    """Apply pending migrations in order and record each one, then bring tables in line
    with today's settings (idempotent).

    Settings a migration filled in when it ran (TTLs from STREAMAPP_HOT_RETENTION_DAYS and
    STREAMAPP_GOLD_RETENTION_DAYS, the Kafka tables' broker list and schema registry URL)
    are applied to the live tables: ALTER TABLE … MODIFY TTL, or a Kafka table dropped
    and created again under the same consumer group, so its views resume from the
    group's committed offsets.
    """
    # Sized to the local stack: after `stack up --brokers 3` the Kafka tables get every node
    # even if only the first is in STREAMAPP_KAFKA_BOOTSTRAP_SERVERS.
    settings = stack_settings()
    steps = 0
    for step in migrations.migrate(connect(settings), settings):
        click.echo(step)
        steps += 1
    if not steps:
        click.echo("up to date: nothing to apply, tables match the settings")


@db.command()
def status() -> None:
    """List every migration, applied (when) or pending, and where live tables differ from
    today's settings (TTLs, Kafka broker list and registry URL). Exit 1 if anything is
    pending or differs; `streamapp db migrate` brings them in line."""
    settings = stack_settings()
    client = connect(settings)
    done = migrations.applied(client)
    found = migrations.discover()
    missing = 0
    for migration in found:
        record = done.get(migration.version)
        if record is None:
            missing += 1
            click.echo(f"pending  {migration.path.name}")
        else:
            flag = "" if record.checksum == migration.checksum else "  (CHANGED since applied!)"
            click.echo(f"applied  {migration.path.name}  {record.applied_at:%Y-%m-%d %H:%M:%S}{flag}")
    drifts = migrations.check(client, settings, found)
    for item in drifts:
        click.echo(f"drift    {item}")
    for table, statements in migrations.fixes(drifts):
        click.echo(f"  fix    {table}: " + "; ".join(" ".join(s.split()) for s in statements))
    if drifts:
        click.echo("run `streamapp db migrate` to bring the tables in line with the settings")
    if missing or drifts:
        raise SystemExit(1)
