"""``streamapp tables``: what the warehouse holds, read-only, the same on chdb and a ClickHouse server.

Every query is a SELECT on a client with ``readonly=1`` (the server refuses DDL and DML
even if a bug tried). Table names from the user are checked against ``system.tables``
before they reach any SQL; values travel as query parameters.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from streamapp import tables as table_names
from streamapp.clients.clickhouse import connect, root_cause
from streamapp.errors import StreamappError
from streamapp.exchanges import EXCHANGES
from streamapp.settings import Settings

log = logging.getLogger(__name__)

# `tail` shows the newest rows by the first of these the table has (insertion time first).
TAIL_ORDER = ("ingest_time", "seen_at", "applied_at", "window_start", "trade_time")

CANDLE_COLUMNS = ("window_start", "open", "high", "low", "close", "volume", "quote_volume", "trade_count")


@dataclass(frozen=True)
class Result:
    columns: list[str]
    rows: list[list[Any]]


def open_readonly(settings: Settings) -> Client:
    """A client whose every query runs with ``readonly=1``.

    An account that is read-only already (a ``readonly`` profile) may not send the setting
    at all ("Cannot modify 'readonly' setting in readonly mode"): it is then left out, the
    server enforces it anyway. Any other refusal is logged and the queries, all SELECTs, run
    without it.
    """
    client = connect(settings)
    current = client.server_settings.get("readonly")
    if current is not None and str(current.value) not in ("", "0"):
        return client
    try:
        client.set_client_setting("readonly", "1")
        client.query("SELECT 1")
    except ClickHouseError as exc:
        log.warning("the warehouse refuses readonly=1 (%s): running SELECTs without it", server_message(exc))
        client = connect(settings)
    return client


def query(client: Client, sql: str, parameters: dict[str, Any] | None = None) -> Result:
    """Run one SELECT; a server or network error becomes one line naming the cause."""
    try:
        result = client.query(sql, parameters=parameters or {})
    except ClickHouseError as exc:
        raise StreamappError(f"warehouse query failed: {server_message(exc)}") from exc
    return Result(list(result.column_names), [list(r) for r in result.result_rows])


def server_message(exc: BaseException) -> str:
    """``Code: 60. DB::Exception: Unknown table ... (UNKNOWN_TABLE)`` out of clickhouse-connect's wrapping."""
    text = str(exc)
    marker = "DB::Exception:"
    if marker in text:
        text = text[text.index(marker) + len(marker):].strip()
        text = text.split(" (version ")[0]
        return text.splitlines()[0] if text else type(exc).__name__
    return root_cause(exc)


# --- list ---------------------------------------------------------------------

def _system_columns(client: Client, table: str) -> set[str]:
    rows = query(client, "SELECT name FROM system.columns WHERE database = 'system' AND table = {t:String}",
                 {"t": table}).rows
    return {r[0] for r in rows}


def list_tables(client: Client) -> Result:
    """Every table and view: engine, rows, bytes on disk, last insert (newest active part's time).

    Rows and bytes come from active parts where ``system.parts`` answers, else from
    ``system.tables`` totals; a column the engine lacks (older servers, chdb) shows as null.
    """
    have = _system_columns(client, "tables")
    total_rows = "total_rows" if "total_rows" in have else "NULL"
    total_bytes = "total_bytes" if "total_bytes" in have else "NULL"
    tables = query(client, f"SELECT name, engine, {total_rows}, {total_bytes} FROM system.tables "
                           "WHERE database = currentDatabase() ORDER BY name").rows
    parts: dict[str, tuple] = {}
    part_columns = _system_columns(client, "parts")
    if {"table", "rows", "bytes_on_disk", "modification_time", "active"} <= part_columns:
        try:
            parts = {r[0]: tuple(r[1:]) for r in query(
                client, "SELECT table, sum(rows), sum(bytes_on_disk), max(modification_time) FROM system.parts "
                        "WHERE database = currentDatabase() AND active GROUP BY table").rows}
        except StreamappError as exc:  # degrade: totals from system.tables, no last insert
            log.warning("system.parts unavailable (%s): showing totals only", exc)
    rows = []
    for name, engine, t_rows, t_bytes in tables:
        p_rows, p_bytes, last = parts.get(name, (None, None, None))
        rows.append([name, engine, t_rows if p_rows is None else p_rows, t_bytes if p_bytes is None else p_bytes,
                     _utc(last)])
    return Result(["table", "engine", "rows", "bytes_on_disk", "last_insert"], rows)


# --- describe -------------------------------------------------------------------

@dataclass(frozen=True)
class TableInfo:
    name: str
    engine: str
    sorting_key: str
    partition_key: str
    columns: Result


def table_names_in(client: Client) -> dict[str, str]:
    """name -> engine of every table in the current database."""
    return {r[0]: r[1] for r in query(client, "SELECT name, engine FROM system.tables "
                                              "WHERE database = currentDatabase() ORDER BY name").rows}


def check_table(client: Client, table: str) -> str:
    """The engine of ``table``, or an error naming the tables there are."""
    known = table_names_in(client)
    if table not in known:
        if not known:
            raise StreamappError(f"unknown table {table!r}: the warehouse has no tables; run `streamapp db migrate`")
        lower = {name.lower(): name for name in known}  # SILVER_TRADES suggests silver_trades
        close = [lower[m] for m in difflib.get_close_matches(table.lower(), lower, n=5, cutoff=0.6)]
        hint = f"did you mean {', '.join(close)}?" if close else f"the warehouse has {', '.join(sorted(known))}"
        raise StreamappError(f"unknown table {table!r}: {hint} (`streamapp tables list` shows them all)")
    return known[table]


def describe(client: Client, table: str) -> TableInfo:
    engine = check_table(client, table)
    have = _system_columns(client, "tables")
    keys = [k if k in have else "''" for k in ("sorting_key", "partition_key")]
    meta = query(client, f"SELECT {keys[0]}, {keys[1]} FROM system.tables "
                         "WHERE database = currentDatabase() AND name = {t:String}", {"t": table}).rows
    sorting, partition = meta[0] if meta else ("", "")
    want = ["name", "type", "default_kind", "default_expression", "comment"]
    col_have = _system_columns(client, "columns")
    select = ", ".join(c if c in col_have else f"'' AS {c}" for c in want)
    columns = query(client, f"SELECT {select} FROM system.columns WHERE database = currentDatabase() "
                            "AND table = {t:String} ORDER BY position", {"t": table})
    return TableInfo(table, engine, sorting or "", partition or "", columns)


# --- tail -----------------------------------------------------------------------

def tail(client: Client, table: str, n: int) -> Result:
    """The newest ``n`` rows (oldest first) by the table's insertion or time column.

    Aggregate states (``AggregateFunction`` columns of Gold) are shown finalized.
    A Kafka-engine table is refused: reading it would take records from its consumer group.
    """
    if n < 1:
        raise StreamappError(f"-n {n}: give a number of rows of at least 1")
    engine = check_table(client, table)
    if engine == "Kafka":
        raise StreamappError(f"{table} is a Kafka-engine table: reading it would consume its topic's records; "
                             f"tail the table its materialized view writes to instead")
    columns = query(client, "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
                            "AND table = {t:String} ORDER BY position", {"t": table}).rows
    select = ", ".join(f"finalizeAggregation({_q(c)}) AS {_q(c)}" if t.startswith("AggregateFunction(") else _q(c)
                       for c, t in columns) or "*"
    order = next((c for c in TAIL_ORDER if c in {name for name, _ in columns}), None)
    sql = f"SELECT {select} FROM {_q(table)}"
    if order:
        sql += f" ORDER BY {_q(order)} DESC"
    result = query(client, sql + f" LIMIT {int(n)}")
    if order:
        result.rows.reverse()
    if not result.columns:  # an empty answer may carry no header: name the columns anyway
        result = Result([name for name, _ in columns], result.rows)
    return result


# --- candles ----------------------------------------------------------------------

@dataclass(frozen=True)
class CandleQuery:
    exchange: str
    symbol: str
    interval: str
    last: int = 20
    since_ms: int | None = None
    until_ms: int | None = None

    def check(self) -> None:
        if self.exchange not in EXCHANGES:
            raise StreamappError(f"unknown exchange {self.exchange!r}: choose one of {', '.join(EXCHANGES)}")
        if self.interval not in table_names.INTERVALS:
            raise StreamappError(f"unknown interval {self.interval!r}: choose one of "
                                 f"{', '.join(table_names.INTERVALS)}")
        if self.last < 1:
            raise StreamappError(f"--last {self.last}: give a number of candles of at least 1")
        check_range(self.since_ms, self.until_ms)


def check_range(since_ms: int | None, until_ms: int | None) -> None:
    """An empty or inverted time range is an error, not an empty answer."""
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        word = "empty" if until_ms == since_ms else "inverted"
        raise StreamappError(f"{word} time range: --until ({_iso_ms(until_ms)}) must be after "
                             f"--since ({_iso_ms(since_ms)})")


def exchange_to_canonical(client: Client, exchange: str, symbol: str) -> str | None:
    """The canonical symbol Silver recorded for an exchange symbol (``BTCUSDT``, ``XBT/USD``), if any."""
    rows = query(client, f"SELECT any(symbol) FROM {table_names.SILVER} "
                         "WHERE exchange = {e:String} AND exchange_symbol = {s:String}",
                 {"e": exchange, "s": symbol}).rows
    return rows[0][0] if rows and rows[0][0] else None


def candles(client: Client, q: CandleQuery) -> Result:
    """The last ``q.last`` candles (oldest first) of one exchange, symbol and interval, from the final view.

    The symbol is canonical (``BTC/USDT``; ``btc-usdt`` works too) or as the exchange sends it
    (``BTCUSDT``, ``XBT/USD``), looked up in Silver when the canonical spelling has no candles.
    """
    q.check()
    view = table_names.candles(q.interval)
    where = "exchange = {e:String} AND symbol = {s:String}"
    params: dict[str, Any] = {"e": q.exchange}
    if q.since_ms is not None:
        where += " AND window_start >= fromUnixTimestamp64Milli({since:Int64})"
        params["since"] = q.since_ms
    if q.until_ms is not None:
        where += " AND window_start < fromUnixTimestamp64Milli({until:Int64})"
        params["until"] = q.until_ms
    sql = (f"SELECT {', '.join(CANDLE_COLUMNS)} FROM {view} WHERE {where} "
           f"ORDER BY window_start DESC LIMIT {int(q.last)}")
    symbol = q.symbol.strip().upper().replace("-", "/")
    result = query(client, sql, params | {"s": symbol})
    if not result.rows:
        known = [r[0] for r in query(client, f"SELECT DISTINCT symbol FROM {view} WHERE exchange = {{e:String}} "
                                             "ORDER BY symbol", {"e": q.exchange}).rows]
        if symbol not in known:
            mapped = exchange_to_canonical(client, q.exchange, q.symbol.strip())
            if mapped in known:
                result = query(client, sql, params | {"s": mapped})
            else:
                shown = ", ".join(known) if known else "none yet"
                raise StreamappError(f"no {q.interval} candles for {q.exchange} {q.symbol}: symbols with candles "
                                     f"there: {shown}")
    result.rows.reverse()
    if not result.columns:  # an empty answer may carry no header: the CSV still gets one
        result = Result(list(CANDLE_COLUMNS), result.rows)
    return result


# --- helpers ----------------------------------------------------------------------

def _q(identifier: str) -> str:
    """Backtick-quote an identifier that came from system tables."""
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat().replace("+00:00", "Z")


def table_rows_for_display(result: Result) -> tuple[list[str], list[Sequence[Any]]]:
    """``list`` for a human: sizes as KiB/MiB, last insert to the second."""
    from streamapp.operate.formats import human_bytes

    idx = result.columns.index("bytes_on_disk")
    rows = []
    for row in result.rows:
        shown = list(row)
        shown[idx] = human_bytes(row[idx])
        if isinstance(shown[-1], datetime):
            shown[-1] = shown[-1].strftime("%Y-%m-%d %H:%M:%S")
        rows.append(shown)
    columns = list(result.columns)
    columns[idx] = "size"
    return columns, rows
