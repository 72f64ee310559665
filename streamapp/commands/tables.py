"""``streamapp tables``: list, describe, tail and chart what the warehouse holds (read-only)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from streamapp import tables as table_names
from streamapp.errors import StreamappError
from streamapp.exchanges import EXCHANGES
from streamapp.operate import formats
from streamapp.operate import tables as ops
from streamapp.operate.plot import plot_candles
from streamapp.operate.timeparse import parse_time_ms
from streamapp.settings import get_settings

_format = click.option("--format", "fmt", type=click.Choice(formats.FORMATS), default="table", show_default=True,
                       help="A table for people; json or csv for scripts.")


_tier = click.option("--tier", type=click.Choice(("hot", "cold", "auto")), default="auto", show_default=True,
                     help="hot: ClickHouse; cold: the Iceberg tables; auto: hot, and cold for what hot no "
                          "longer holds.")


def _emit(columns, rows, fmt: str, *, title: str | None = None, right=()) -> None:
    text = formats.render(columns, rows, fmt, title=title, right=right)
    if text is not None:
        click.echo(text, nl=not text.endswith("\n"))


@click.group("tables")
def tables() -> None:
    """Inspect the warehouse (ClickHouse or the local chdb) without changing it: every query is a
    SELECT under readonly=1. Address: STREAMAPP_CLICKHOUSE_URL."""


@tables.command("list")
@_format
def list_(fmt: str) -> None:
    """Every table and view: engine, rows, size on disk, last insert."""
    result = ops.list_tables(ops.open_readonly(get_settings()))
    if fmt == "table":
        columns, rows = ops.table_rows_for_display(result)
        _emit(columns, rows, fmt, right=("rows", "size"))
    else:
        _emit(result.columns, result.rows, fmt)


@tables.command()
@click.argument("table")
@_format
def describe(table: str, fmt: str) -> None:
    """Columns (name, type, default, comment), engine, sorting and partition keys of TABLE."""
    info = ops.describe(ops.open_readonly(get_settings()), table)
    if fmt == "json":
        click.echo(json.dumps({"table": info.name, "engine": info.engine, "sorting_key": info.sorting_key,
                               "partition_key": info.partition_key,
                               "columns": json.loads(formats.to_json(info.columns.columns, info.columns.rows))},
                              indent=2))
        return
    title = f"{info.name}  engine={info.engine}"
    if info.sorting_key:
        title += f"  order by ({info.sorting_key})"
    if info.partition_key:
        title += f"  partition by {info.partition_key}"
    _emit(info.columns.columns, info.columns.rows, fmt, title=title)


@tables.command()
@click.argument("table")
@click.option("-n", "--lines", "n", type=int, default=10, show_default=True, help="How many rows.")
@_tier
@_format
def tail(table: str, n: int, tier: str, fmt: str) -> None:
    """The newest rows of TABLE (by ingest or window time where it has one), oldest first.

    With --tier auto, a table the hot tier lacks or holds no rows of is read from the cold tier.
    """
    from streamapp.coldtier import history

    if tier == "cold":
        result = history.cold_tail(get_settings(), table, n)
    else:
        client = ops.open_readonly(get_settings())
        if tier == "auto" and table in history.cold_table_names() and table not in ops.table_names_in(client):
            result = history.cold_tail(get_settings(), table, n)
        else:
            result = ops.tail(client, table, n)
            if tier == "auto" and not result.rows and table in history.cold_table_names():
                result = history.cold_tail(get_settings(), table, n)
    _emit(result.columns, result.rows, fmt)


@tables.command()
@click.option("--exchange", required=True, type=click.Choice(EXCHANGES))
@click.option("--symbol", required=True, help="Canonical (BTC/USDT) or as the exchange sends it (BTCUSDT).")
@click.option("--interval", default="1m", show_default=True, type=click.Choice(table_names.INTERVALS))
@click.option("--last", default=20, show_default=True, type=int, help="How many candles (the newest).")
@click.option("--since", help="First window start (inclusive): ISO 8601 (no zone = UTC) or epoch ms.")
@click.option("--until", help="Windows starting before this (exclusive): ISO 8601 or epoch ms.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw a candlestick chart with volume into this PNG file.")
@_tier
@_format
def candles(exchange: str, symbol: str, interval: str, last: int, since: str | None, until: str | None,
            plot: Path | None, tier: str, fmt: str) -> None:
    """OHLCV candles from gold_ohlcv_<interval>_final, oldest first.

    A symbol with no candles at all on the exchange is an error (exit 1, naming the symbols
    that have some); a known symbol with none in --since/--until is an empty answer (exit 0:
    "(no rows)", [] or a CSV header), except with --plot, which has nothing to draw (exit 1).

    \b
      streamapp tables candles --exchange binance --symbol BTC/USDT --interval 1m --last 30
      streamapp tables candles --exchange binanceusdm --symbol BTC/USDT --interval 1m --last 30
      streamapp tables candles --exchange kraken --symbol XBT/USD --interval 1h --plot btc.png
    """
    query = ops.CandleQuery(exchange, symbol, interval, last,
                            None if since is None else parse_time_ms(since, "--since"),
                            None if until is None else parse_time_ms(until, "--until"))
    query.check()  # bad arguments are reported before connecting
    result = _candles(query, tier)
    title = f"{exchange} {symbol} {interval} candles (UTC)"
    _emit(result.columns, result.rows, fmt, title=title,
          right=tuple(c for c in result.columns if c != "window_start"))
    if plot is not None:
        drawn = plot_candles(result, plot, title=title, interval=interval)
        click.echo(f"chart of {drawn} candles written to {plot}", err=True)


def _candles(query: ops.CandleQuery, tier: str) -> ops.Result:
    """Candles from one tier, or (auto) from the hot tier and the cold one for windows the hot one lacks."""
    from streamapp.coldtier import history

    if tier == "cold":
        return history.cold_candles(get_settings(), query)
    client = ops.open_readonly(get_settings())
    if tier == "hot":
        return ops.candles(client, query)
    try:
        hot = ops.candles(client, query)
    except StreamappError:  # no candles at all in the hot tier: maybe all of it is cold
        cold = history.cold_candles(get_settings(), query)
        if not cold.rows:
            raise
        return cold
    oldest = history.oldest_hot_window_ms(client, query)
    if oldest is not None and (query.since_ms is None or query.since_ms < oldest) and len(hot.rows) < query.last:
        cold = history.cold_candles(get_settings(), query, before_ms=oldest)
        return history.merge_candles(cold, hot, query.last)
    return hot
