"""``streamapp db``: the warehouse schema (migrations in streamapp/sql/)."""

from __future__ import annotations

import click

from streamapp import migrations
from streamapp.clients.clickhouse import connect
from streamapp.settings import get_settings


@click.group()
def db() -> None:
    """Apply and inspect the ClickHouse migrations in streamapp/sql/ (same files for the local
    warehouse and a ClickHouse server)."""


@db.command()
def migrate() -> None:
    """Apply pending migrations in order and record each one (idempotent)."""
    settings = get_settings()
    client = connect(settings)
    todo = migrations.pending(client, migrations.discover())
    if not todo:
        click.echo("up to date: nothing to apply")
        return
    for migration in todo:
        count = migrations.apply(client, settings, migration)
        click.echo(f"applied {migration.path.name} ({count} statements)")


@db.command()
def status() -> None:
    """List every migration, applied (when) or pending. Exit 1 if any is pending."""
    client = connect(get_settings())
    done = migrations.applied(client)
    missing = 0
    for migration in migrations.discover():
        record = done.get(migration.version)
        if record is None:
            missing += 1
            click.echo(f"pending  {migration.path.name}")
        else:
            flag = "" if record.checksum == migration.checksum else "  (CHANGED since applied!)"
            click.echo(f"applied  {migration.path.name}  {record.applied_at:%Y-%m-%d %H:%M:%S}{flag}")
    if missing:
        raise SystemExit(1)
