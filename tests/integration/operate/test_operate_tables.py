"""``streamapp tables``: list, describe, tail, candles (+ --plot) against the running warehouse, and bad arguments.

The fixture writes a few trades of a symbol of its own (in 2020: Gold's TTL drops windows older
than ``gold_retention_days``) straight into Silver, so the Gold views hold candles this test knows
exactly. It only INSERTs (a shared warehouse's tables are never altered; the symbol is new each run),
and no other test's data is touched.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from streamapp.clients.clickhouse import connect
from streamapp.settings import get_settings
from tests.cli import invoke

pytestmark = pytest.mark.integration

T0 = datetime(2020, 9, 9, 1, 46, tzinfo=timezone.utc)
SYMBOL = f"OPS{uuid.uuid4().hex[:6].upper()}/USDT"
EXCHANGE_SYMBOL = SYMBOL.replace("/", "")
# (seconds after T0, price, quantity, side): two 1m candles, the first with four trades.
TRADES = [(1, "10.5", "1", "buy"), (20, "12", "2", "sell"), (40, "9.25", "0.5", "buy"), (59, "11", "1", "sell"),
          (65, "11.5", "3", "buy")]


@pytest.fixture(scope="module")
def warehouse(migrated):
    stack = migrated
    client = connect(stack)
    now = datetime.now(timezone.utc)
    rows = [("binance", SYMBOL, EXCHANGE_SYMBOL, str(1000 + i), 1000 + i, Decimal(p), Decimal(q), side,
             T0 + timedelta(seconds=s), T0 + timedelta(seconds=s), T0 + timedelta(seconds=s), now)
            for i, (s, p, q, side) in enumerate(TRADES)]
    client.insert("silver_trades", rows, column_names=[
        "exchange", "symbol", "exchange_symbol", "trade_id", "trade_seq", "price", "quantity", "side",
        "trade_time", "event_time", "receive_time", "ingest_time"])
    return stack


run = invoke


def ok(*args: str) -> str:
    result = run(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_list_every_table_with_rows_size_and_last_insert(warehouse):
    rows = {r["table"]: r for r in json.loads(ok("tables", "list", "--format", "json"))}
    for name in ("silver_trades", "gold_ohlcv_1m", "gold_ohlcv_1m_final", "schema_migrations", "kafka_errors"):
        assert name in rows
    silver = rows["silver_trades"]
    assert silver["engine"] == "ReplacingMergeTree"
    assert silver["rows"] >= len(TRADES) and silver["bytes_on_disk"] > 0
    assert silver["last_insert"].startswith("20")
    assert rows["gold_ohlcv_1m_final"]["engine"] == "View" and rows["gold_ohlcv_1m_final"]["rows"] is None
    table = ok("tables", "list")
    assert "silver_trades" in table and "ReplacingMergeTree" in table and ("KiB" in table or "MiB" in table)
    lines = list(csv.reader(io.StringIO(ok("tables", "list", "--format", "csv"))))
    assert lines[0] == ["table", "engine", "rows", "bytes_on_disk", "last_insert"]
    assert len(lines) == len(rows) + 1


def test_describe_columns_engine_and_keys(warehouse):
    info = json.loads(ok("tables", "describe", "silver_trades", "--format", "json"))
    assert info["engine"] == "ReplacingMergeTree"
    assert info["sorting_key"] == "exchange, symbol, trade_time, trade_id"
    assert [c["name"] for c in info["columns"]][:3] == ["exchange", "symbol", "exchange_symbol"]
    assert {"name": "price", "type": "Decimal(38, 18)"}.items() <= info["columns"][5].items()
    text = ok("tables", "describe", "kafka_errors")
    assert "seen_at" in text and "now64(6)" in text
    assert ok("tables", "describe", "gold_ohlcv_1m", "--format", "csv").startswith(
        "name,type,default_kind,default_expression,comment\n")


def test_tail_newest_rows_oldest_first(warehouse):
    rows = json.loads(ok("tables", "tail", "schema_migrations", "-n", "2", "--format", "json"))
    assert len(rows) == 2 and rows[0]["applied_at"] <= rows[1]["applied_at"]
    # Gold's aggregate states are shown finalized, not as bytes.
    gold = json.loads(ok("tables", "tail", "gold_ohlcv_1m", "-n", "3", "--format", "json"))
    assert gold and all(isinstance(r["open"], str) and Decimal(r["open"]) > 0 for r in gold)
    silver = json.loads(ok("tables", "tail", "silver_trades", "-n", "1", "--format", "json"))
    assert len(silver) == 1 and set(silver[0]) >= {"trade_id", "price", "ingest_time"}


def test_candles_exact_values_in_every_format(warehouse, tmp_path):
    args = ["tables", "candles", "--exchange", "binance", "--symbol", SYMBOL, "--interval", "1m", "--last", "5"]
    rows = json.loads(ok(*args, "--format", "json"))
    assert rows == [
        {"window_start": "2020-09-09T01:46:00Z", "open": "10.5", "high": "12", "low": "9.25", "close": "11",
         "volume": "4.5", "quote_volume": "50.125", "trade_count": 4},
        {"window_start": "2020-09-09T01:47:00Z", "open": "11.5", "high": "11.5", "low": "11.5", "close": "11.5",
         "volume": "3", "quote_volume": "34.5", "trade_count": 1},
    ]
    # --last takes the newest; the exchange's own spelling of the symbol works too.
    assert [r["window_start"] for r in json.loads(ok(
        "tables", "candles", "--exchange", "binance", "--symbol", EXCHANGE_SYMBOL, "--last", "1", "--format", "json",
    ))] == ["2020-09-09T01:47:00Z"]
    hourly = json.loads(ok("tables", "candles", "--exchange", "binance", "--symbol", SYMBOL, "--interval", "1h",
                           "--format", "json"))
    assert [(r["open"], r["close"], r["volume"], r["trade_count"]) for r in hourly] == [("10.5", "11.5", "7.5", 5)]
    since = json.loads(ok(*args, "--since", "2020-09-09T01:47:00Z", "--until", "2020-09-09T02:00:00", "--format",
                          "json"))
    assert [r["window_start"] for r in since] == ["2020-09-09T01:47:00Z"]
    table = ok(*args)
    assert "2020-09-09T01:46:00Z" in table and "50.125" in table
    assert ok(*args, "--format", "csv").splitlines()[1] == "2020-09-09T01:46:00Z,10.5,12,9.25,11,4.5,50.125,4"
    png = tmp_path / "chart.png"
    result = run(*args, "--plot", str(png))
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert f"chart of 2 candles written to {png}" in result.output


def test_plot_draws_a_body_per_candle(warehouse, tmp_path):
    from streamapp.operate import tables as ops
    from streamapp.operate.plot import plot_candles

    client = ops.open_readonly(get_settings())
    result = ops.candles(client, ops.CandleQuery("binance", SYMBOL, "1m", last=5))
    assert plot_candles(result, tmp_path / "c.png", title="t", interval="1m") == len(result.rows) == 2


def test_known_symbol_with_no_candles_in_range_is_empty_not_an_error(warehouse, tmp_path):
    """Documented in ``tables candles --help``: exit 0 and an empty answer in every format; --plot exits 1."""
    args = ["tables", "candles", "--exchange", "binance", "--symbol", SYMBOL, "--since", "2021-01-01"]
    assert json.loads(ok(*args, "--format", "json")) == []
    assert ok(*args, "--format", "csv") == "window_start,open,high,low,close,volume,quote_volume,trade_count\n"
    assert "(no rows)" in ok(*args)
    result = run(*args, "--plot", str(tmp_path / "c.png"))
    assert result.exit_code == 1 and "nothing to plot" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("args, words", [
    (["tables", "describe", "no_such_table"], ["unknown table 'no_such_table'", "silver_trades"]),
    (["tables", "describe", "silver_trade"], ["unknown table 'silver_trade': did you mean silver_trades?"]),
    (["tables", "tail", "gold_ohlcv_2m"], ["did you mean ", "gold_ohlcv_1m,"]),
    (["tables", "tail", "no_such_table"], ["unknown table 'no_such_table'"]),
    (["tables", "tail", "kafka_trades_binance"], ["Kafka-engine table", "consume"]),
    (["tables", "tail", "silver_trades", "-n", "0"], ["-n 0", "at least 1"]),
    (["tables", "candles", "--exchange", "binance", "--symbol", "NOPE/USDT"], ["no 1m candles", "NOPE/USDT"]),
    (["tables", "candles", "--exchange", "binance", "--symbol", "X", "--since", "2024-01-02", "--until",
      "2024-01-01"], ["inverted time range"]),
    (["tables", "candles", "--exchange", "binance", "--symbol", "X", "--since", "2024-01-01", "--until",
      "2024-01-01T00:00:00Z"], ["empty time range"]),
    (["tables", "candles", "--exchange", "binance", "--symbol", "X", "--since", "yesterday"], ["'yesterday'",
                                                                                                 "ISO 8601"]),
    (["tables", "candles", "--exchange", "binance", "--symbol", "X", "--last", "0"], ["--last 0"]),
])
def test_bad_arguments_one_line_exit_1(warehouse, args, words):
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output


@pytest.mark.parametrize("args", [["tables", "candles", "--exchange", "bitstamp", "--symbol", "X"],
                                  ["tables", "candles", "--exchange", "binance", "--symbol", "X", "--interval", "2m"],
                                  ["tables", "list", "--format", "xml"]])
def test_click_rejects_unknown_choices(args):
    result = run(*args)
    assert result.exit_code == 2 and "Invalid value" in result.output and "Traceback" not in result.output


def test_commands_are_read_only(warehouse):
    from streamapp.errors import StreamappError
    from streamapp.operate import tables as ops

    client = ops.open_readonly(get_settings())
    with pytest.raises(StreamappError, match="readonly|READONLY"):
        ops.query(client, "CREATE TABLE ops_ro_probe (x UInt8) ENGINE = Memory")


@pytest.mark.parametrize("args", [["tables", "list"], ["tables", "describe", "silver_trades"],
                                  ["tables", "tail", "silver_trades"],
                                  ["tables", "candles", "--exchange", "binance", "--symbol", "BTC/USDT"]])
def test_unreachable_warehouse_one_line(args, unused_port):
    result = run(*args, env={"STREAMAPP_CLICKHOUSE_URL": f"http://127.0.0.1:{unused_port}"})
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot reach ClickHouse at 127.0.0.1:") and \
        result.output.count("\n") == 1, result.output


@pytest.fixture
def unused_port() -> int:
    from tests.integration.processes import free_port

    return free_port()


def test_every_grafana_clickhouse_query_runs_read_only(warehouse):
    """The dashboards' SQL (Grafana macros filled in) runs on this warehouse under readonly=1, every interval."""
    import re
    from pathlib import Path

    from streamapp.operate import tables as ops
    from streamapp.tables import INTERVALS

    client = ops.open_readonly(get_settings())
    dashboards = sorted((Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "dashboards").glob("*.json"))
    ran, candle_rows = 0, None
    for path in dashboards:
        d = json.loads(path.read_text())
        panels = [(p["title"], p["type"], t["rawSql"]) for p in d["panels"] for t in p.get("targets", [])
                  if "rawSql" in t]
        panels += [(v["name"], "variable", v["query"]) for v in d["templating"]["list"] if v["type"] == "query"]
        for title, kind, sql in panels:
            sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 BETWEEN toDateTime('2020-09-09 00:00:00', 'UTC') "
                                                     r"AND now() + INTERVAL 1 DAY", sql)
            sql = sql.replace("${exchange}", "binance").replace("${symbol}", SYMBOL)
            assert "$" not in sql.replace("${interval}", ""), (path.name, title, sql)
            for interval in INTERVALS if "${interval}" in sql else [None]:
                text = sql if interval is None else sql.replace("${interval}", interval)
                result = ops.query(client, text)
                ran += 1
                if kind == "candlestick" and interval == "1m":
                    candle_rows = result
    assert ran >= 10
    assert candle_rows is not None and [r[1:5] for r in candle_rows.rows] == [[10.5, 12.0, 9.25, 11.0],
                                                                              [11.5, 11.5, 11.5, 11.5]]


def test_pipeline_up_prints_first_candles_with_the_same_formatter(warehouse, capsys):
    from streamapp.commands.pipeline import _show_first_candles

    _show_first_candles(get_settings(), 5)
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if SYMBOL in x)
    assert "first candles (UTC)" in out and "2020-09-09T01:47:00Z" in line and line.split()[-2:] == ["11.5", "│"]
