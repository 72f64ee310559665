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
from collections.abc import Iterator
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


# --- settings the migrations baked in -------------------------------------------------
#
# ``{placeholders}`` are filled when a migration is first applied, so a setting changed
# later changes no table by itself. The tables the applied migrations create are
# compared with what those migrations would create under today's settings (TTLs and
# Kafka-engine settings, as ``system.tables.engine_full`` shows them), and brought in
# line: ``ALTER TABLE … MODIFY TTL``, or a Kafka table dropped and created again.

# The environment variables behind each placeholder, for messages.
PLACEHOLDER_VARIABLES = {
    "kafka_broker_list": "STREAMAPP_CLICKHOUSE_KAFKA_BROKER_LIST (default: STREAMAPP_KAFKA_BOOTSTRAP_SERVERS)",
    "schema_registry_url": "STREAMAPP_CLICKHOUSE_SCHEMA_REGISTRY_URL (default: STREAMAPP_SCHEMA_REGISTRY_URL)",
    "hot_retention_days": "STREAMAPP_HOT_RETENTION_DAYS",
    "gold_retention_days": "STREAMAPP_GOLD_RETENTION_DAYS",
}
TTL = "TTL"


@dataclass(frozen=True)
class Wanted:
    """A table as the migrations create it under today's settings."""

    table: str
    create: str  # the CREATE statement, rendered
    ttl: str | None = None
    kafka: dict[str, str] | None = None  # Kafka-engine settings (None: not a Kafka table)
    placeholders: dict[str, tuple[str, ...]] | None = None  # item (TTL or setting) -> placeholders in it


@dataclass(frozen=True)
class Drift:
    """One way a live table differs from its migrations under today's settings."""

    table: str
    item: str  # TTL, a Kafka setting name, or "missing"
    live: str
    wanted: str
    fix: tuple[str, ...]  # the statements that bring the table in line; empty: not fixed automatically
    because: str = ""  # the settings behind the wanted value

    def __str__(self) -> str:
        if self.item == "missing":
            return f"{self.table}: missing (created by an applied migration)"
        why = f" ({self.because})" if self.because else ""
        return f"{self.table}: {self.item} is {self.live!r}; the settings want {self.wanted!r}{why}"


_CREATE_TABLE = re.compile(r"^CREATE TABLE IF NOT EXISTS (\w+)\b")
_MODIFY_TTL = re.compile(r"^ALTER TABLE (\w+) MODIFY TTL\s+(.+)$", re.DOTALL)
_DROP_TABLE = re.compile(r"^DROP TABLE IF EXISTS (\w+)$")
_ENGINE_KAFKA = re.compile(r"\bENGINE\s*=\s*Kafka\b")
_SETTING = re.compile(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|[^,\s]+)")
_INTERVAL = re.compile(r"\bINTERVAL\s+(\d+)\s+(SECOND|MINUTE|HOUR|DAY|WEEK|MONTH|QUARTER|YEAR)\b", re.IGNORECASE)


def _uncommented(sql: str) -> str:
    """``sql`` without ``--`` comments at line ends (our SQL has no ``--`` inside strings)."""
    return "\n".join(re.sub(r"\s*--[^'\n]*$", "", line) for line in sql.splitlines())


def _ttl_of_create(statement: str) -> str | None:
    """The TTL expression of a CREATE TABLE (our migrations write it on one ``TTL …`` line)."""
    match = re.search(r"^TTL\s+(.+)$", _uncommented(statement), re.MULTILINE)
    return match.group(1).strip() if match else None


def _ttl_of_engine(engine_full: str) -> str | None:
    match = re.search(r"\sTTL\s+(.+?)(?:\s+SETTINGS\s.*)?$", engine_full, re.DOTALL)
    return match.group(1).strip() if match else None


def _settings_of(text: str) -> dict[str, str]:
    """``name = value`` pairs after ``SETTINGS`` (quotes removed), from a statement or an engine_full."""
    _, found, tail = _uncommented(text).partition("SETTINGS")
    if not found:
        return {}
    pairs = {}
    for name, value in _SETTING.findall(tail):
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        pairs[name] = value
    return pairs


def same_expression(a: str, b: str) -> bool:
    """Equal TTL expressions, whether written ``INTERVAL 30 DAY`` or shown as ``toIntervalDay(30)``."""

    def canonical(expr: str) -> str:
        expr = _INTERVAL.sub(lambda m: f"toInterval{m.group(2).capitalize()}({m.group(1)})", expr)
        return "".join(expr.split())

    return canonical(a) == canonical(b)


def wanted_tables(settings: Settings, applied_migrations: list[Migration]) -> dict[str, Wanted]:
    """Each table ``applied_migrations`` create, as they would create it under ``settings``.

    A table a later migration drops is not wanted (0008 replaces gold_ohlcv_5m…1d by views).
    """
    values = placeholders(settings)
    marks = {key: "{" + key + "}" for key in values}
    wanted: dict[str, Wanted] = {}
    for migration in applied_migrations:
        for statement, template in zip(statements(migration.text, values), statements(migration.text, marks)):
            if match := _CREATE_TABLE.match(statement):
                table = match.group(1)
                ttl, ttl_template = _ttl_of_create(statement), _ttl_of_create(template)
                found = {TTL: tuple(_PLACEHOLDER.findall(ttl_template or ""))}
                kafka = None
                if _ENGINE_KAFKA.search(statement):
                    kafka = _settings_of(statement)
                    found.update({k: tuple(_PLACEHOLDER.findall(v)) for k, v in _settings_of(template).items()})
                wanted[table] = Wanted(table, statement, ttl, kafka, found)
            elif match := _MODIFY_TTL.match(statement):
                table, ttl = match.groups()
                if table in wanted:
                    old = wanted[table]
                    found = {**(old.placeholders or {}),
                             TTL: tuple(_PLACEHOLDER.findall(_MODIFY_TTL.match(template).group(2)))}
                    wanted[table] = Wanted(table, old.create, " ".join(ttl.split()), old.kafka, found)
            elif match := _DROP_TABLE.match(statement):
                wanted.pop(match.group(1), None)
    return wanted


def drift(wanted: dict[str, Wanted], live: dict[str, str]) -> list[Drift]:
    """Where the live tables (name -> ``engine_full``) differ from ``wanted``, with the fix for each."""
    found: list[Drift] = []
    for table, want in wanted.items():

        def because(item: str, want: Wanted = want) -> str:
            """The settings behind one item of ``want``."""
            return ", ".join(PLACEHOLDER_VARIABLES.get(p, p) for p in (want.placeholders or {}).get(item, ()))

        if table not in live:
            # A Kafka table is dropped and created again to change it: an interrupted re-create leaves it
            # missing, and creating it lets its views resume. Anything else missing is for a person to look at.
            fix = (want.create,) if want.kafka is not None else ()
            found.append(Drift(table, "missing", "", "", fix))
            continue
        engine_full = live[table]
        if want.kafka is not None:
            have = _settings_of(engine_full)
            recreate = (f"DROP TABLE IF EXISTS {table}", want.create)
            for name, value in want.kafka.items():
                if have.get(name) != value:
                    found.append(Drift(table, name, have.get(name, ""), value, recreate, because(name)))
        have_ttl = _ttl_of_engine(engine_full)
        if want.ttl is not None and (have_ttl is None or not same_expression(have_ttl, want.ttl)):
            found.append(Drift(table, TTL, have_ttl or "", want.ttl,
                               (f"ALTER TABLE {table} MODIFY TTL {want.ttl}",), because(TTL)))
    return found


def fixes(drifts: list[Drift]) -> list[tuple[str, list[str]]]:
    """The statements to run per table, each once, in the order the drifts were found."""
    per_table: dict[str, list[str]] = {}
    for item in drifts:
        todo = per_table.setdefault(item.table, [])
        todo.extend(s for s in item.fix if s not in todo)
    return [(table, todo) for table, todo in per_table.items() if todo]


def live_tables(client: Client) -> dict[str, str]:
    """The current database's tables: name -> ``engine_full``."""
    rows = client.query("SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()").result_rows
    return dict(rows)


def check(client: Client, settings: Settings, migrations: list[Migration]) -> list[Drift]:
    """Drift of the tables the applied ones of ``migrations`` create, against ``settings``."""
    done = applied(client)
    return drift(wanted_tables(settings, [m for m in migrations if m.version in done]), live_tables(client))


def bring_in_line(client: Client, table: str, todo: list[str]) -> None:
    """Run ``todo`` for ``table``; on failure, say what is left to run by hand."""
    for number, statement in enumerate(todo):
        try:
            client.command(statement)
        except ClickHouseError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            rest = ";\n".join(todo[number:])
            raise StreamappError(f"bringing {table} in line failed: {first}\nstill to run:\n{rest};") from exc


@dataclass(frozen=True)
class Step:
    """One thing :func:`migrate` did: a migration applied, a drift found, a table brought in line."""

    kind: str  # "applied", "drift" or "fixed"
    subject: str  # the migration's file name, or the table
    text: str  # the line to show

    def __str__(self) -> str:
        return self.text


def migrate(client: Client, settings: Settings, sql_dir: Path | None = None) -> Iterator[Step]:
    """Apply pending migrations in order, then bring the tables in line with ``settings``.

    Raises if a table differs in a way only a person should fix (a missing non-Kafka table).
    """
    found = discover(sql_dir)
    for migration in pending(client, found):
        count = apply(client, settings, migration)
        yield Step("applied", migration.path.name, f"applied {migration.path.name} ({count} statements)")
    drifts = check(client, settings, found)
    for table, todo in fixes(drifts):
        for item in drifts:
            if item.table == table:
                yield Step("drift", table, f"drift   {item}")
        bring_in_line(client, table, todo)
        yield Step("fixed", table, f"fixed   {table}: " + "; ".join(s.splitlines()[0] for s in todo))
    manual = [d for d in drifts if not d.fix]
    if manual:
        raise StreamappError(
            "not fixed automatically: " + "; ".join(str(d) for d in manual)
            + ". Look at what removed it; its CREATE statement is in streamapp/sql/"
        )
