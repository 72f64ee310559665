"""``streamapp verify warm-cold``: the hot tier (ClickHouse) against the cold tier (Iceberg), exactly.

Per table, exchange, symbol and hour of trade time: row count, sum of quantity, sum of
price × quantity (exact decimals, never floats), first and last trade time; for Gold every
candle, field by field. The cold side is read **through the catalog** (a pyiceberg scan of the
table's current snapshot), never by listing files. :func:`compare` is pure: two summaries in,
the differences out.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
from clickhouse_connect.driver.client import Client
from pyiceberg.catalog import Catalog

from streamapp import tables as hot
from streamapp.coldtier import catalog, schemas
from streamapp.coldtier.offload import bronze_sources, hour_filter, micros, utc
from streamapp.coldtier.plan import hour_of
from streamapp.settings import Settings

TRADE_METRICS = ("rows", "sum_quantity", "sum_price_x_quantity", "min_trade_time", "max_trade_time")
CANDLE_FIELDS = ("open", "high", "low", "close", "volume", "quote_volume", "trade_count", "taker_buy_volume",
                 "taker_buy_quote_volume", "first_trade_time", "last_trade_time")
_EXACT = decimal.Context(prec=120, traps=[decimal.Inexact, decimal.Rounded, decimal.InvalidOperation])

Key = tuple[str, str, str, datetime]  # table, exchange, symbol, hour (Gold: window start)
Summary = dict[Key, tuple]


@dataclass(frozen=True)
class Difference:
    table: str
    exchange: str
    symbol: str
    time: datetime
    what: str
    hot: Any
    cold: Any


def compare(hot_side: Summary, cold_side: Summary) -> list[Difference]:
    """Every key missing on one side, and every differing field (named) where both have it."""
    differences = []
    for key in sorted(set(hot_side) | set(cold_side), key=lambda k: (k[0], k[1], k[2], k[3])):
        table = key[0]
        names = TRADE_METRICS if not table.startswith("gold_") else CANDLE_FIELDS
        h, c = hot_side.get(key), cold_side.get(key)
        if h is None or c is None:
            differences.append(Difference(*key, "missing in " + ("hot" if h is None else "cold"),
                                          _head(h), _head(c)))
            continue
        for name, a, b in zip(names, h, c):
            if a != b:
                differences.append(Difference(*key, name, a, b))
    return differences


def _head(values: tuple | None) -> Any:
    return None if values is None else values[0]  # rows (trades) or open (candles): enough to read the row


# --- the hot side ------------------------------------------------------------------------------

def _trades_sql(table: str, final: bool) -> str:
    return (f"SELECT exchange, symbol, toStartOfHour(trade_time) AS h, count(), sum(quantity), "
            f"sum(toDecimal256(price, 18) * toDecimal256(quantity, 18)), min(trade_time), max(trade_time) "
            f"FROM {table}{' FINAL' if final else ''} "
            "WHERE trade_time >= fromUnixTimestamp64Micro({a:Int64}, 'UTC') "
            "AND trade_time < fromUnixTimestamp64Micro({b:Int64}, 'UTC') GROUP BY exchange, symbol, h")


def hot_summary(client: Client, start: datetime, end: datetime) -> Summary:
    summary: Summary = {}
    params = {"a": micros(start), "b": micros(end)}
    sources = [(schemas.bronze(e), hot.bronze(e), False) for e in bronze_sources(client)]
    sources.append((schemas.SILVER, hot.SILVER, True))
    for cold_name, hot_name, final in sources:
        for ex, sym, h, n, q, pq, lo, hi in client.query(_trades_sql(hot_name, final), parameters=params).result_rows:
            summary[(cold_name, ex, sym, utc(h))] = (int(n), Decimal(q), Decimal(pq), utc(lo), utc(hi))
    for interval in hot.INTERVALS:
        sql = (f"SELECT exchange, symbol, window_start, {', '.join(CANDLE_FIELDS)} FROM {hot.candles(interval)} "
               "WHERE window_start >= toDateTime({a:Int64}, 'UTC') AND window_start < toDateTime({b:Int64}, 'UTC')")
        for row in client.query(sql, parameters={"a": int(start.timestamp()), "b": int(end.timestamp())}).result_rows:
            summary[(schemas.gold(interval), row[0], row[1], utc(row[2]))] = _candle(row[3:])
    return summary


def _candle(values: Iterable) -> tuple:
    return tuple(utc(v) if isinstance(v, datetime) else int(v) if isinstance(v, int) else Decimal(v)
                 for v in values)


# --- the cold side ------------------------------------------------------------------------------

def summarize_trades(table: str, rows: pa.Table) -> Summary:
    """Trade metrics per (exchange, symbol, hour) of Arrow rows, with exact decimal arithmetic."""
    acc: dict[Key, list] = {}
    cols = [rows.column(c).to_pylist() for c in ("exchange", "symbol", "trade_time", "price", "quantity")]
    for ex, sym, t, price, qty in zip(*cols):
        key = (table, ex, sym, hour_of(utc(t)))
        a = acc.get(key)
        pq = _EXACT.multiply(price, qty)
        if a is None:
            acc[key] = [1, qty, pq, t, t]
        else:
            a[0] += 1
            a[1] = _EXACT.add(a[1], qty)
            a[2] = _EXACT.add(a[2], pq)
            a[3] = min(a[3], t)
            a[4] = max(a[4], t)
    return {k: (n, q, pq, utc(lo), utc(hi)) for k, (n, q, pq, lo, hi) in acc.items()}


def summarize_candles(table: str, rows: pa.Table) -> Summary:
    data = rows.select(["exchange", "symbol", "window_start", *CANDLE_FIELDS]).to_pylist()
    return {(table, r["exchange"], r["symbol"], utc(r["window_start"])): _candle(r[f] for f in CANDLE_FIELDS)
            for r in data}


def cold_summary(cat: Catalog, settings: Settings, start: datetime, end: datetime,
                 exchanges: Iterable[str]) -> Summary:
    summary: Summary = {}
    names = [schemas.bronze(e) for e in exchanges] + [schemas.SILVER]
    for name in names:
        table = catalog.load(cat, settings, name)
        if table is not None:
            rows = table.scan(row_filter=hour_filter("trade_time", start, end),
                              selected_fields=("exchange", "symbol", "trade_time", "price", "quantity")).to_arrow()
            summary |= summarize_trades(name, rows)
    for interval in hot.INTERVALS:
        name = schemas.gold(interval)
        table = catalog.load(cat, settings, name)
        if table is not None:
            summary |= summarize_candles(name, table.scan(row_filter=hour_filter("window_start", start, end))
                                         .to_arrow())
    return summary


def verify(client: Client, cat: Catalog, settings: Settings, start: datetime, end: datetime) -> tuple[
        list[Difference], int]:
    """The differences, and how many (table, exchange, symbol, hour or candle) keys were compared."""
    exchanges = bronze_sources(client)
    hot_side = hot_summary(client, start, end)
    cold_side = cold_summary(cat, settings, start, end, exchanges)
    return compare(hot_side, cold_side), len(set(hot_side) | set(cold_side))

