"""``streamapp iceberg maintain``: compaction, snapshot expiry, unreferenced files, bounded metadata.

- **Compaction** (pyiceberg 0.12 has no ``rewrite_data_files``): each closed (day, exchange)
  partition with more than one data file is read and overwritten with its own rows, sorted by
  symbol and time, in one transaction. An offload committing into the same partition meanwhile
  makes that commit fail (``CommitFailedException`` / ``ValidationException``); the partition
  is then read again and retried, so no row is lost or doubled.
- **Expiry**: snapshots older than ``STREAMAPP_ICEBERG_SNAPSHOT_MAX_AGE_H`` are dropped from the
  metadata (the current one always stays). pyiceberg's expiry deletes no file, so
- **unreferenced files** (data files, manifests, manifest lists, metadata files no snapshot or
  metadata log refers to) older than ``STREAMAPP_ICEBERG_ORPHAN_MIN_AGE_S`` are deleted; the age
  guard keeps the files of an offload that has written but not yet committed.
- **Metadata files**: ``write.metadata.delete-after-commit.enabled`` with
  ``write.metadata.previous-versions-max`` (``STREAMAPP_ICEBERG_METADATA_VERSIONS_MAX``) bound them.

Use this *or* Spark's ``expire_snapshots`` for a table, never both (README, "Cold tier").
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import pyarrow.fs as pafs
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import AlwaysTrue, And, BooleanExpression, EqualTo
from pyiceberg.table import Table

from streamapp.coldtier import catalog, schemas
from streamapp.coldtier.offload import hour_filter
from streamapp.errors import StreamappError
from streamapp.settings import Settings

log = logging.getLogger(__name__)
ATTEMPTS = 5
DAY = timedelta(days=1)


@dataclass
class TableReport:
    table: str
    data_files_before: int = 0
    data_files_after: int = 0
    files_on_storage_before: int = 0
    files_on_storage_after: int = 0
    partitions_compacted: int = 0
    retries: int = 0
    snapshots_expired: int = 0
    files_deleted: int = 0
    rows: int = 0


@dataclass
class MaintainReport:
    tables: list[TableReport] = field(default_factory=list)
    seconds: float = 0.0


def _retryable() -> tuple[type[Exception], ...]:
    errors: list[type[Exception]] = [CommitFailedException]
    try:
        from pyiceberg.exceptions import ValidationException

        errors.append(ValidationException)
    except ImportError:  # pragma: no cover - older pyiceberg
        pass
    return tuple(errors)


# --- compaction ------------------------------------------------------------------------------------

def small_partitions(table: Table, spec: schemas.ColdTable | None, last_closed_day: date) -> list[tuple]:
    """(day, exchange) partitions of closed days holding more than one data file; () for an unpartitioned table."""
    files = table.inspect.files().select(["partition"]).to_pylist()
    if spec is None:
        return [()] if len(files) > 1 else []
    counts: dict[tuple, int] = {}
    for f in files:
        part = f["partition"]
        key = (part[f"{spec.time_column}_day"], part["exchange"])
        counts[key] = counts.get(key, 0) + 1
    return sorted(k for k, n in counts.items() if n > 1 and k[0] <= last_closed_day)


def _partition_filter(spec: schemas.ColdTable | None, key: tuple) -> BooleanExpression:
    if spec is None:
        return AlwaysTrue()
    day, exchange = key
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    return And(hour_filter(spec.time_column, start, start + DAY), EqualTo("exchange", exchange))


def compact_partition(cat: Catalog, settings: Settings, name: str, spec: schemas.ColdTable | None,
                      key: tuple) -> tuple[int, int]:
    """Rewrite one partition as one sorted file, in one transaction; (rows, retries)."""
    where = _partition_filter(spec, key)
    for attempt in range(ATTEMPTS):
        table = cat.load_table(catalog.identifier(settings, name))
        rows = table.scan(row_filter=where).to_arrow()
        if spec is not None and rows.num_rows:
            order = [(c, "ascending") for c in ("symbol", spec.time_column) if c in rows.column_names]
            rows = rows.sort_by(order)
        try:
            with table.transaction() as tx:
                tx.overwrite(rows, overwrite_filter=where, snapshot_properties={"streamapp.maintain": "compact"})
            return rows.num_rows, attempt
        except _retryable() as exc:
            log.info("compacting %s %s: a concurrent commit (%s); reading it again", name, key, exc)
            time.sleep(0.2 * (attempt + 1))
    raise StreamappError(f"compacting {name} {key} failed {ATTEMPTS} times on concurrent commits; run it again")


# --- expiry and unreferenced files ---------------------------------------------------------------------

def expire(table: Table, older_than: datetime) -> int:
    before = len(table.snapshots())
    current = table.current_snapshot()
    if current is None or not any(s.timestamp_ms < older_than.timestamp() * 1000 and s.snapshot_id !=
                                  current.snapshot_id for s in table.snapshots()):
        return 0
    table.maintenance.expire_snapshots().older_than(older_than).commit()
    table.refresh()
    return before - len(table.snapshots())


def referenced_files(table: Table) -> set[str]:
    """Every file the table's metadata still refers to: data, manifests, manifest lists, metadata."""
    refs = {table.metadata_location}
    refs |= {m.metadata_file for m in table.metadata.metadata_log}
    for snapshot in table.snapshots():
        refs.add(snapshot.manifest_list)
    if table.current_snapshot() is not None:
        refs |= set(table.inspect.all_manifests().column("path").to_pylist())
        refs |= set(table.inspect.all_files().column("file_path").to_pylist())
    refs |= {s.statistics_path for s in table.metadata.statistics}
    return {_path(r) for r in refs}


def _path(uri: str) -> str:
    for prefix in ("file://", "s3://", "s3a://", "gs://"):
        if uri.startswith(prefix):
            return uri[len(prefix):]
    return uri


def filesystem(settings: Settings, location: str) -> pafs.FileSystem:
    if location.startswith(("s3://", "s3a://")):
        secret = settings.iceberg_s3_secret_access_key
        return pafs.S3FileSystem(
            endpoint_override=settings.iceberg_s3_endpoint or None, region=settings.iceberg_s3_region,
            access_key=settings.iceberg_s3_access_key_id, secret_key=secret.get_secret_value() if secret else None,
            scheme="http" if settings.iceberg_s3_endpoint.startswith("http://") else "https")
    return pafs.LocalFileSystem()


def stored_files(fs: pafs.FileSystem, location: str) -> list[pafs.FileInfo]:
    try:
        infos = fs.get_file_info(pafs.FileSelector(_path(location), recursive=True, allow_not_found=True))
    except OSError as exc:
        raise StreamappError(f"cannot list {location}: {exc}") from exc
    return [i for i in infos if i.type == pafs.FileType.File]


def delete_unreferenced(settings: Settings, table: Table, min_age: timedelta, now: datetime) -> int:
    fs = filesystem(settings, table.location())
    refs = referenced_files(table)
    deleted = 0
    for info in stored_files(fs, table.location()):
        if info.path in refs:
            continue
        if info.mtime is not None and now - info.mtime.replace(tzinfo=info.mtime.tzinfo or timezone.utc) < min_age:
            continue  # maybe an offload's file, written but not committed yet
        fs.delete_file(info.path)
        deleted += 1
    return deleted


def ensure_properties(table: Table, settings: Settings) -> Table:
    wanted = catalog.table_properties(settings)
    if any(table.properties.get(k) != v for k, v in wanted.items()):
        with table.transaction() as tx:
            tx.set_properties(wanted)
        table.refresh()
    return table


# --- the whole run ---------------------------------------------------------------------------------

def maintain_table(cat: Catalog, settings: Settings, name: str, spec: schemas.ColdTable | None, now: datetime,
                   *, compact: bool = True) -> TableReport:
    report = TableReport(name)
    table = ensure_properties(cat.load_table(catalog.identifier(settings, name)), settings)
    fs = filesystem(settings, table.location())
    report.data_files_before = len(table.inspect.files())
    report.files_on_storage_before = len(stored_files(fs, table.location()))
    last_closed_day = (now - timedelta(seconds=settings.iceberg_offload_grace_s) - DAY).date()
    if compact:
        for key in small_partitions(table, spec, last_closed_day):
            _, retries = compact_partition(cat, settings, name, spec, key)
            report.partitions_compacted += 1
            report.retries += retries
    table = cat.load_table(catalog.identifier(settings, name))
    older_than = now - timedelta(hours=settings.iceberg_snapshot_max_age_h)
    for attempt in range(ATTEMPTS):
        try:
            report.snapshots_expired = expire(table, older_than)
            break
        except _retryable():
            table = cat.load_table(catalog.identifier(settings, name))
    report.files_deleted = delete_unreferenced(settings, table, timedelta(seconds=settings.iceberg_orphan_min_age_s),
                                               now)
    table = cat.load_table(catalog.identifier(settings, name))
    report.data_files_after = len(table.inspect.files())
    report.files_on_storage_after = len(stored_files(fs, table.location()))
    snapshot = table.current_snapshot()
    report.rows = int(snapshot.summary.get("total-records", 0)) if snapshot and snapshot.summary else 0
    return report


def run(settings: Settings, *, now: datetime | None = None, compact: bool = True) -> MaintainReport:
    began = time.monotonic()
    now = now or datetime.now(timezone.utc)
    cat = catalog.open_catalog(settings)
    report = MaintainReport()
    for spec in schemas.cold_tables():
        if catalog.load(cat, settings, spec.name) is not None:
            report.tables.append(maintain_table(cat, settings, spec.name, spec, now, compact=compact))
    if catalog.load(cat, settings, schemas.OFFLOAD_LOG) is not None:
        report.tables.append(maintain_table(cat, settings, schemas.OFFLOAD_LOG, None, now, compact=compact))
    report.seconds = time.monotonic() - began
    return report

