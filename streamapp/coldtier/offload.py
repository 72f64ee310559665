"""``streamapp offload``: closed hours from the hot tier into the Iceberg tables, one commit per table and hour.

For each due hour (see :mod:`streamapp.coldtier.plan`) every table gets the hour's rows read from
ClickHouse as Arrow (Silver deduplicated with ``FINAL``, Gold from the finalizing views, Bronze
with its Kafka metadata) or from the raw topics, cast to the table's schema, and written with
``overwrite(rows, overwrite_filter=<the hour>)``: one atomic commit that replaces exactly that
hour, so running an hour again neither duplicates nor loses rows. The hour is then appended to
the offload log (the watermark); a crash in between only means the hour is written again.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pyarrow as pa
from clickhouse_connect.driver.client import Client
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import And, BooleanExpression, GreaterThanOrEqual, LessThan
from pyiceberg.table import Table

from streamapp import tables as hot
from streamapp.clients.clickhouse import connect
from streamapp.coldtier import arrow, catalog, schemas
from streamapp.coldtier.plan import HOUR, Done, HourStat, Plan, gold_range, plan
from streamapp.errors import StreamappError
from streamapp.exchanges import EXCHANGES
from streamapp.settings import Settings

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
TRADES, RAW = "trades", "raw"  # the offload log's layers: bronze+silver+gold of an hour go together
HOUR_PROPERTY = "streamapp.offload.hour"
INTERVAL_LENGTH = {"1m": timedelta(minutes=1), "5m": timedelta(minutes=5), "15m": timedelta(minutes=15),
                   "30m": timedelta(minutes=30), "1h": timedelta(hours=1), "1d": timedelta(days=1)}

_TRADE_COLUMNS = ("exchange, symbol, exchange_symbol, trade_id, trade_seq, price, quantity, side, "
                  "trade_time, event_time, receive_time")
SILVER_SQL = (f"SELECT {_TRADE_COLUMNS}, ingest_time FROM {hot.SILVER} FINAL "
              "WHERE trade_time >= fromUnixTimestamp64Micro({a:Int64}, 'UTC') "
              "AND trade_time < fromUnixTimestamp64Micro({b:Int64}, 'UTC')")
BRONZE_SQL = (f"SELECT {_TRADE_COLUMNS}, raw_partition, raw_offset, _topic, _partition, _offset, "
              "toDateTime64(_timestamp, 6, 'UTC') AS _timestamp, ingest_time FROM {table} "
              "WHERE trade_time >= fromUnixTimestamp64Micro({a:Int64}, 'UTC') "
              "AND trade_time < fromUnixTimestamp64Micro({b:Int64}, 'UTC')")
GOLD_SQL = ("SELECT exchange, symbol, toDateTime64(window_start, 6, 'UTC') AS window_start, open, high, low, close, "
            "volume, quote_volume, trade_count, taker_buy_volume, taker_buy_quote_volume, first_trade_time, "
            "last_trade_time FROM {view} "
            "WHERE window_start >= toDateTime({a:Int64}, 'UTC') AND window_start < toDateTime({b:Int64}, 'UTC')")


def hour_filter(column: str, start: datetime, end: datetime) -> BooleanExpression:
    return And(GreaterThanOrEqual(column, start.isoformat()), LessThan(column, end.isoformat()))


def micros(t: datetime) -> int:
    return (t - EPOCH) // timedelta(microseconds=1)


def utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


# --- what the hot tier holds ---------------------------------------------------------------------

def hot_tables(client: Client) -> set[str]:
    return {r[0] for r in client.query("SELECT name FROM system.tables WHERE database = currentDatabase()")
            .result_rows}


def bronze_sources(client: Client) -> list[str]:
    """The exchanges whose Bronze table exists in ClickHouse (a newly added one may not be migrated yet)."""
    present = hot_tables(client)
    missing = [e for e in EXCHANGES if hot.bronze(e) not in present]
    if missing:
        log.warning("no Bronze table in ClickHouse for %s: `streamapp db migrate` creates it", ", ".join(missing))
    return [e for e in EXCHANGES if hot.bronze(e) in present]


def trade_hours(client: Client, exchanges: list[str]) -> list[HourStat]:
    """Per hour of trade time: rows in Silver and Bronze, oldest and newest ingest time."""
    parts = [hot.SILVER] + [hot.bronze(e) for e in exchanges]
    union = " UNION ALL ".join(
        f"SELECT toStartOfHour(trade_time) AS h, count() AS c, min(ingest_time) AS lo, max(ingest_time) AS hi "
        f"FROM {t} GROUP BY h" for t in parts)
    rows = client.query(f"SELECT h, sum(c), min(lo), max(hi) FROM ({union}) GROUP BY h ORDER BY h").result_rows
    return [HourStat(utc(h), int(c), utc(lo), utc(hi)) for h, c, lo, hi in rows]


# --- the watermark ---------------------------------------------------------------------------------

def read_log(cat: Catalog | None, settings: Settings, layer: str) -> dict[datetime, Done]:
    """What the offload log holds for ``layer``, by hour (nothing without a catalog)."""
    table = None if cat is None else catalog.load(cat, settings, schemas.OFFLOAD_LOG)
    if table is None:
        return {}
    rows = table.scan(row_filter=f"layer = '{layer}'").to_arrow().sort_by([("offloaded_at", "ascending")])
    done: dict[datetime, Done] = {}
    for row in rows.to_pylist():  # the latest entry of an hour wins
        done[utc(row["hour"])] = Done(utc(row["hour"]), row["rows"], utc(row["max_ingest_time"]))
    return done


def write_log(cat: Catalog, settings: Settings, layer: str, stats: list[HourStat]) -> None:
    table = catalog.ensure_log(cat, settings)
    row = pa.table({"layer": [layer] * len(stats), "hour": [s.hour for s in stats], "rows": [s.rows for s in stats],
                    "max_ingest_time": [s.max_ingest for s in stats],
                    "offloaded_at": [datetime.now(timezone.utc)] * len(stats)})
    table.append(arrow.conform(row, table.schema().as_arrow(), what=schemas.OFFLOAD_LOG))


# --- writing one hour ----------------------------------------------------------------------------

def replace_hour(table: Table, rows: pa.Table, time_column: str, start: datetime, end: datetime,
                 properties: dict[str, str]) -> None:
    """Replace exactly ``[start, end)`` of ``time_column`` with ``rows``, in one commit."""
    data = arrow.conform(rows, table.schema().as_arrow(), what=f"{table.name()[-1]} {start.isoformat()}")
    where = hour_filter(time_column, start, end)
    if data.num_rows:
        with warnings.catch_warnings():  # "Delete operation did not match any records": a first offload
            warnings.simplefilter("ignore", UserWarning)
            table.overwrite(data, overwrite_filter=where, snapshot_properties=properties)
    elif any(True for _ in table.scan(row_filter=where, selected_fields=(time_column,)).plan_files()):
        table.delete(where, snapshot_properties=properties)  # the hot tier has none left: neither has cold


@dataclass
class HourResult:
    hours: list[datetime]
    layer: str
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows written


def batches(stats: list[HourStat]) -> list[list[HourStat]]:
    """Consecutive due hours of one UTC day, together: each table replaces them in one commit.

    Hourly runs offload one hour at a time; a catch-up (after downtime, or a replay of old
    days) writes a day's hours in one commit per table instead of 24, which keeps the
    table's metadata (one snapshot per commit) and the run's time small.
    """
    groups: list[list[HourStat]] = []
    for stat in sorted(stats, key=lambda s: s.hour):
        last = groups[-1][-1] if groups else None
        if last is not None and last.hour + HOUR == stat.hour and last.hour.date() == stat.hour.date():
            groups[-1].append(stat)
        else:
            groups.append([stat])
    return groups


def offload_trade_hours(client: Client, cat: Catalog, settings: Settings, stats: list[HourStat],
                        exchanges: list[str]) -> HourResult:
    """Consecutive hours (see :func:`batches`) of Bronze, Silver and Gold, one commit per table."""
    start, end = stats[0].hour, stats[-1].hour + HOUR
    props = {HOUR_PROPERTY: ",".join(s.hour.isoformat() for s in stats), "streamapp.offload.layer": TRADES}
    result = HourResult([s.hour for s in stats], TRADES)
    params = {"a": micros(start), "b": micros(end)}
    for exchange in exchanges:
        spec = schemas.by_name(schemas.bronze(exchange))
        rows = _query_arrow(client, BRONZE_SQL.replace("{table}", hot.bronze(exchange)), params)
        replace_hour(catalog.ensure_table(cat, settings, spec), rows, spec.time_column, start, end, props)
        result.rows[spec.name] = rows.num_rows
    spec = schemas.by_name(schemas.SILVER)
    rows = _query_arrow(client, SILVER_SQL, params)
    replace_hour(catalog.ensure_table(cat, settings, spec), rows, spec.time_column, start, end, props)
    result.rows[spec.name] = rows.num_rows
    for interval in hot.INTERVALS:
        spec = schemas.by_name(schemas.gold(interval))
        a = gold_range(start, INTERVAL_LENGTH[interval], EPOCH)[0]
        b = gold_range(end - HOUR, INTERVAL_LENGTH[interval], EPOCH)[1]
        rows = _query_arrow(client, GOLD_SQL.replace("{view}", hot.candles(interval)), {"a": int(a.timestamp()), "b": int(b.timestamp())})
        replace_hour(catalog.ensure_table(cat, settings, spec), rows, spec.time_column, a, b, props)
        result.rows[spec.name] = rows.num_rows
    write_log(cat, settings, TRADES, stats)
    return result


def _query_arrow(client: Client, sql: str, params: dict) -> pa.Table:
    from clickhouse_connect.driver.exceptions import ClickHouseError

    from streamapp.operate.tables import server_message

    try:
        return client.query_arrow(sql, parameters=params)
    except ClickHouseError as exc:
        raise StreamappError(f"reading the hot tier failed: {server_message(exc)}") from exc


# --- the whole run ---------------------------------------------------------------------------------

@dataclass
class RunSummary:
    plan: Plan
    raw_plan: Plan | None
    written: list[HourResult] = field(default_factory=list)
    seconds: float = 0.0


def in_window(stats: list[HourStat], since: datetime | None, until: datetime | None) -> list[HourStat]:
    """The hours starting in ``[since, until)`` (either end open)."""
    return [s for s in stats if (since is None or s.hour >= since) and (until is None or s.hour < until)]


def trade_plan(client: Client, cat: Catalog | None, settings: Settings, now: datetime,
               since: datetime | None = None, until: datetime | None = None) -> tuple[Plan, list[str]]:
    exchanges = bronze_sources(client)
    stats = in_window(trade_hours(client, exchanges), since, until)
    return plan(stats, read_log(cat, settings, TRADES), now=now,
                grace=timedelta(seconds=settings.iceberg_offload_grace_s),
                retention=timedelta(days=settings.hot_retention_days)), exchanges


def run(settings: Settings, *, now: datetime | None = None, raw: bool = True, batch: bool = True,
        since: datetime | None = None, until: datetime | None = None,
        progress: Callable[[Iterator, int, str], Iterator] | None = None) -> RunSummary:
    """Offload every due hour (trades, then raw records); ``progress`` wraps the hour loops (a bar).

    ``batch=False`` commits hour by hour, as hourly runs do (the benchmark and tests use it);
    ``since``/``until`` limit the run to the hours starting in that range.
    """
    import time

    from streamapp.coldtier import raw as raw_layer

    began = time.monotonic()
    now = now or datetime.now(timezone.utc)
    client = connect(settings, send_receive_timeout=300)
    cat = catalog.open_catalog(settings)
    trades, exchanges = trade_plan(client, cat, settings, now, since, until)
    summary = RunSummary(trades, None)
    wrap = progress or (lambda it, total, label: it)
    groups = batches(trades.due) if batch else [[s] for s in trades.due]
    for group in wrap(iter(groups), len(groups), "trades"):
        summary.written.append(offload_trade_hours(client, cat, settings, group, exchanges))
    if raw:
        summary.raw_plan = raw_layer.raw_plan(cat, settings, now, since, until)
        groups = batches(summary.raw_plan.due) if batch else [[s] for s in summary.raw_plan.due]
        for group in wrap(iter(groups), len(groups), "raw"):
            summary.written.append(raw_layer.offload_raw_hours(cat, settings, group))
    summary.seconds = time.monotonic() - began
    return summary
