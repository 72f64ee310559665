"""``streamapp offload``, ``streamapp iceberg maintain``, ``streamapp verify warm-cold``: the Iceberg cold tier."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streamapp.operate.formats import cell
from streamapp.operate.status import parse_window
from streamapp.operate.timeparse import parse_time_ms
from streamapp.settings import get_settings

log = logging.getLogger(__name__)


def _console() -> Console:
    console = Console(stderr=False)
    return console if console.is_terminal else Console(width=160)


@click.command()
@click.option("--every", help="Run again at this interval (1h, 15m, ...) until interrupted; default: once.")
@click.option("--raw/--no-raw", default=True, show_default=True,
              help="Also offload the raw topics' records (the raw layer).")
@click.option("--from", "since", help="Only hours from this one (ISO 8601, no zone = UTC, or epoch ms).")
@click.option("--to", "until", help="Only hours starting before this (exclusive).")
def offload(every: str | None, raw: bool, since: str | None, until: str | None) -> None:
    """Copy every closed hour not yet offloaded from the hot tier into the Iceberg tables.

    Each table's hour is replaced in one Iceberg commit, so an hour offloaded twice holds the
    same rows; the offload log (the watermark) records what is done. An hour is closed
    STREAMAPP_ICEBERG_OFFLOAD_GRACE_S after its end and after its last ingested trade.
    Catalog and storage: STREAMAPP_ICEBERG_* (default: SQLite catalog and files under
    $STREAMAPP_HOME/iceberg).

    \b
      streamapp offload              # once
      streamapp offload --every 1h   # hourly, until Ctrl-C
      streamapp offload --from 2024-08-08 --to 2024-08-09   # only that day's hours
    """
    from streamapp.coldtier import offload as ops

    start, end = _range(since, until)
    interval = parse_window(every) if every else None
    if every and interval is None:
        raise click.BadParameter("give a duration like 1h or 15m", param_hint="--every")
    console = _console()
    while True:
        with Progress(TextColumn("offloading {task.description} (days of hours)"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            def progress(items, total, label):
                task = bar.add_task(label, total=total)
                for item in items:
                    yield item
                    bar.advance(task)
            summary = ops.run(get_settings(), raw=raw, since=start, until=end, progress=progress)
        _print_offload(summary, console)
        if interval is None:
            return
        log.info("next offload in %s", every)
        time.sleep(interval)


def _range(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    from streamapp.errors import StreamappError

    a = None if since is None else parse_time_ms(since, "--from")
    b = None if until is None else parse_time_ms(until, "--to")
    if a is not None and b is not None and b <= a:
        raise StreamappError(f"--to {until} must be after --from {since}")
    return (None if a is None else datetime.fromtimestamp(a / 1000, timezone.utc),
            None if b is None else datetime.fromtimestamp(b / 1000, timezone.utc))


def _print_offload(summary, console: Console) -> None:
    table = Table(title=f"offload ({summary.seconds:.1f} s)", title_justify="left", show_edge=False)
    for column in ("layer", "hours offloaded", "rows written", "already done", "still open", "expired (skipped)"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    plans = [("trades", summary.plan)] + ([("raw", summary.raw_plan)] if summary.raw_plan else [])
    for layer, plan in plans:
        written = [w for w in summary.written if w.layer == layer]
        rows = sum(sum(w.rows.values()) for w in written)
        table.add_row(layer, str(sum(len(w.hours) for w in written)), f"{rows:,}", str(len(plan.done)), str(len(plan.open)),
                      str(len(plan.expired)))
    console.print(table)
    for layer, plan in plans:
        for stat in plan.expired:
            console.print(f"[yellow]warning[/]: {layer} hour {cell(stat.hour)} was not offloaded and the hot "
                          "tier's retention may already have deleted part of it: skipped")


@click.group("iceberg")
def iceberg() -> None:
    """Maintain the Iceberg cold tier."""


@iceberg.command()
@click.option("--no-compact", is_flag=True, help="Only expire snapshots and delete unreferenced files.")
def maintain(no_compact: bool) -> None:
    """Compact closed days, expire old snapshots, delete unreferenced files, bound metadata files.

    Safe while an offload runs: a compaction that loses a race with an offload's commit is read
    again and retried; files younger than STREAMAPP_ICEBERG_ORPHAN_MIN_AGE_S are never deleted.
    Snapshots older than STREAMAPP_ICEBERG_SNAPSHOT_MAX_AGE_H are expired.
    """
    from streamapp.coldtier import maintain as ops

    report = ops.run(get_settings(), compact=not no_compact)
    table = Table(title=f"iceberg maintain ({report.seconds:.1f} s)", title_justify="left", show_edge=False)
    for column in ("table", "rows", "data files", "files stored", "partitions compacted", "retries",
                   "snapshots expired", "files deleted"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for t in report.tables:
        table.add_row(t.table, f"{t.rows:,}", f"{t.data_files_before} -> {t.data_files_after}",
                      f"{t.files_on_storage_before} -> {t.files_on_storage_after}", str(t.partitions_compacted),
                      str(t.retries), str(t.snapshots_expired), str(t.files_deleted))
    _console().print(table)


@click.group("verify")
def verify() -> None:
    """Check that tiers agree."""


@verify.command("warm-cold")
@click.option("--from", "since", required=True, help="First hour (inclusive): ISO 8601 (no zone = UTC) or epoch ms.")
@click.option("--to", "until", required=True, help="End (exclusive): ISO 8601 or epoch ms.")
def warm_cold(since: str, until: str) -> None:
    """Compare ClickHouse with Iceberg per table, exchange, symbol and hour; exit 1 on any difference.

    Compared: row counts, exact sums of quantity and of price x quantity, first and last trade
    time (Bronze and Silver), and every field of every candle (Gold). Iceberg is read through the
    catalog's current snapshot.

    \b
      streamapp verify warm-cold --from 2024-08-08T00:00 --to 2024-08-09T00:00
    """
    from streamapp.clients.clickhouse import connect
    from streamapp.coldtier import catalog
    from streamapp.coldtier import verify as ops

    start, end = _range(since, until)
    settings = get_settings()
    differences, compared = ops.verify(connect(settings), catalog.open_catalog(settings), settings, start, end)
    console = _console()
    if not differences:
        console.print(f"hot and cold agree: {compared} (table, exchange, symbol, hour or candle) groups compared "
                      f"from {cell(start)} to {cell(end)}")
        return
    table = Table(title=f"{len(differences)} difference(s) between ClickHouse (hot) and Iceberg (cold)",
                  title_justify="left", show_edge=False)
    for column in ("table", "exchange", "symbol", "hour / window", "what", "hot", "cold"):
        table.add_column(column)
    for d in differences:
        table.add_row(d.table, d.exchange, d.symbol, str(cell(d.time)), d.what, str(cell(d.hot)), str(cell(d.cold)))
    console.print(table)
    raise SystemExit(1)
