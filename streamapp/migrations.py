"""Numbered SQL migrations in ``streamapp/sql/``: read, render with settings, apply in order, record.

Each ``NNNN_name.sql`` holds statements separated by ``;`` at the end of a line.
``{placeholders}`` take values from settings (broker list and registry URL as
ClickHouse sees them, retention). Applied migrations are recorded in
``schema_migrations`` with a checksum of the file, so an edited landed
migration is refused instead of silently diverging.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from streamapp import package_data, tables
from streamapp.errors import StreamappError
from streamapp.settings import Settings

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass(frozen=True)
class Applied:
    version: int
    name: str
    checksum: str
    applied_at: datetime


def discover(sql_dir: Path | None = None) -> list[Migration]:
    """The migrations in ``sql_dir`` (default: the package's ``sql/``), in order.

    Misnamed files, repeated numbers and no migrations at all are errors: an
    install without its SQL must not report "up to date" over an empty warehouse.
    """
    sql_dir = sql_dir if sql_dir is not None else package_data.path("sql")
    found: dict[int, Migration] = {}
    for path in sorted(sql_dir.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise StreamappError(f"{path} is not named NNNN_lower_case_name.sql; rename it")
        version = int(match.group(1))
        if version in found:
            raise StreamappError(f"migrations {found[version].path.name} and {path.name} share number {version}")
        found[version] = Migration(version, match.group(2), path)
    if not found:
        raise StreamappError(f"no migrations (NNNN_name.sql) found in {sql_dir}: streamapp's package data is "
                             "missing; reinstall it (pip install .)")
    return [found[v] for v in sorted(found)]


def placeholders(settings: Settings) -> dict[str, str]:
    return {
        "kafka_broker_list": settings.warehouse_kafka_broker_list,
        "schema_registry_url": settings.warehouse_schema_registry_url,
        "hot_retention_days": str(settings.hot_retention_days),
        "gold_retention_days": str(settings.gold_retention_days),
    }


def statements(text: str, values: dict[str, str]) -> list[str]:
    """Split a migration into statements and fill its ``{placeholders}``."""

    def fill(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:
            raise StreamappError(f"unknown placeholder {{{key}}} in a migration; known: {', '.join(sorted(values))}")
        return values[key]

    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    parts = re.split(r";\s*(?:\n|$)", body)
    return [_PLACEHOLDER.sub(fill, part).strip() for part in parts if part.strip()]


_LEDGER_DDL = f"""
CREATE TABLE IF NOT EXISTS {tables.MIGRATIONS}
(
    version     UInt32,
    name        String,
    checksum    String,
    applied_at  DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY version
"""


def applied(client: Client) -> dict[int, Applied]:
    client.command(_LEDGER_DDL)
    rows = client.query(
        f"SELECT version, name, checksum, applied_at FROM {tables.MIGRATIONS} ORDER BY version"
    ).result_rows
    return {row[0]: Applied(*row) for row in rows}


def pending(client: Client, migrations: list[Migration]) -> list[Migration]:
    """The migrations not applied yet; a changed applied migration is an error."""
    done = applied(client)
    for migration in migrations:
        record = done.get(migration.version)
        if record is not None and record.checksum != migration.checksum:
            raise StreamappError(
                f"migration {migration.path.name} changed after it was applied (checksum differs): "
                "landed migrations are never edited; add a new numbered file instead"
            )
    return [m for m in migrations if m.version not in done]


def apply(client: Client, settings: Settings, migration: Migration) -> int:
    """Run one migration's statements and record it. Returns the number of statements."""
    sql = statements(migration.text, placeholders(settings))
    for number, statement in enumerate(sql, 1):
        try:
            client.command(statement)
        except ClickHouseError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StreamappError(
                f"migration {migration.path.name}, statement {number} of {len(sql)} failed: {first}"
            ) from exc
    client.insert(
        tables.MIGRATIONS,
        [[migration.version, migration.name, migration.checksum, datetime.now(timezone.utc)]],
        column_names=["version", "name", "checksum", "applied_at"],
    )
    return len(sql)
