"""History in one place: candles and table tails from the cold tier, or from both tiers (``--tier``).

``auto`` asks the hot tier first and fills what it no longer holds from Iceberg: candles before
the oldest window the hot tier has for the symbol come from the cold tier, the rest from the
hot one (which wins where both have a window). A user asks for a year of candles without
knowing where they live.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan
from pyiceberg.expressions import BooleanExpression

from streamapp.coldtier import catalog, schemas
from streamapp.errors import StreamappError
from streamapp import tables as hot_names
from streamapp.operate.tables import CANDLE_COLUMNS, TAIL_ORDER, CandleQuery, Result, query
from streamapp.settings import Settings

TIERS = ("hot", "cold", "auto")


def cold_table_names() -> list[str]:
    return [t.name for t in schemas.cold_tables()]


def oldest_hot_window_ms(client, q: CandleQuery) -> int | None:
    """The oldest window start the hot tier holds for the query's exchange and symbol (epoch ms)."""
    symbol = q.symbol.strip().upper().replace("-", "/")
    rows = query(client, f"SELECT toUnixTimestamp(min(window_start)) * 1000, count() FROM "
                         f"{hot_names.candles(q.interval)} WHERE exchange = {{e:String}} AND symbol = {{s:String}}",
                 {"e": q.exchange, "s": symbol}).rows
    return int(rows[0][0]) if rows and rows[0][1] else None


def _ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat()


def cold_candles(settings: Settings, q: CandleQuery, *, before_ms: int | None = None) -> Result:
    """The last ``q.last`` candles (oldest first) from the Iceberg Gold table; ``before_ms`` caps the range."""
    q.check()
    if not catalog.exists(settings):
        return Result(list(CANDLE_COLUMNS), [])
    cat = catalog.open_catalog(settings)
    table = catalog.load(cat, settings, schemas.gold(q.interval))
    if table is None:
        return Result(list(CANDLE_COLUMNS), [])
    symbol = q.symbol.strip().upper().replace("-", "/")
    where: BooleanExpression = And(EqualTo("exchange", q.exchange), EqualTo("symbol", symbol))
    until = min(x for x in (q.until_ms, before_ms) if x is not None) if (q.until_ms or before_ms) else None
    if q.since_ms is not None:
        where = And(where, GreaterThanOrEqual("window_start", _ms(q.since_ms)))
    if until is not None:
        where = And(where, LessThan("window_start", _ms(until)))
    rows = table.scan(row_filter=where, selected_fields=CANDLE_COLUMNS).to_arrow()
    rows = rows.sort_by([("window_start", "descending")]).slice(0, q.last).to_pylist()
    return Result(list(CANDLE_COLUMNS), [[r[c] for c in CANDLE_COLUMNS] for r in reversed(rows)])


def merge_candles(cold: Result, hot: Result, last: int) -> Result:
    """Both tiers' candles by window start, the hot one winning a window both have; the newest ``last``."""
    by_window: dict[Any, list] = {_key(r[0]): r for r in cold.rows}
    by_window |= {_key(r[0]): r for r in hot.rows}
    rows = [by_window[k] for k in sorted(by_window)][-last:]
    return Result(list(CANDLE_COLUMNS), rows)


def _key(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def cold_tail(settings: Settings, table_name: str, n: int) -> Result:
    """The newest ``n`` rows (oldest first) of a cold-tier table, by its time column."""
    if n < 1:
        raise StreamappError(f"-n {n}: give a number of rows of at least 1")
    names = cold_table_names()
    if table_name not in names:
        raise StreamappError(f"the cold tier has no table {table_name!r}: it has {', '.join(names)}")
    table = catalog.load(catalog.open_catalog(settings), settings, table_name) if catalog.exists(settings) else None
    if table is None:
        raise StreamappError(f"{table_name} has nothing offloaded yet (`streamapp offload`)")
    rows = table.scan().to_arrow()
    time_column = schemas.by_name(table_name).time_column
    order = next((c for c in TAIL_ORDER if c in rows.column_names), time_column)
    rows = rows.sort_by([(order, "descending"), (time_column, "descending")]).slice(0, n).to_pylist()
    columns = table.schema().column_names
    return Result(columns, [[r[c] for c in columns] for r in reversed(rows)])
