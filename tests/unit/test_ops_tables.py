"""Pure parts of ``streamapp tables``: output formats, argument checks, the chart (no warehouse)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from streamapp.errors import StreamappError
from streamapp.ops import output
from streamapp.ops.tables import CandleQuery, Result, check_range, plot_candles, server_message

COLUMNS = ["window_start", "open", "volume", "trade_count", "note"]
ROWS = [[datetime(2024, 8, 8, 23, 55), Decimal("61807.700000000000000000"), Decimal("151.527020000000000000"), 3260,
         None]]


@pytest.mark.parametrize("value, shown", [
    (Decimal("61807.700000000000000000"), "61807.7"),
    (Decimal("100.000"), "100"),
    (Decimal("0E-18"), "0"),
    (Decimal("12"), "12"),
    (datetime(2024, 8, 8, 23, 55, tzinfo=timezone.utc), "2024-08-08T23:55:00Z"),
    (datetime(2024, 8, 8, 23, 55, 0, 10000), "2024-08-08T23:55:00.010000Z"),  # naive means UTC
    (b"ab", "ab"),
    (None, None),
    (7, 7),
])
def test_cell(value, shown):
    assert output.cell(value) == shown


def test_json_keeps_decimals_exact_as_strings():
    assert json.loads(output.to_json(COLUMNS, ROWS)) == [{
        "window_start": "2024-08-08T23:55:00Z", "open": "61807.7", "volume": "151.52702", "trade_count": 3260,
        "note": None}]


def test_csv_header_and_empty_null():
    assert output.to_csv(COLUMNS, ROWS) == ("window_start,open,volume,trade_count,note\n"
                                            "2024-08-08T23:55:00Z,61807.7,151.52702,3260,\n")


def test_table_renders_every_cell():
    from rich.console import Console

    console = Console(record=True, width=120)
    assert output.render(COLUMNS, ROWS, "table", title="t", console=console) is None
    text = console.export_text()
    assert "61807.7" in text and "2024-08-08T23:55:00Z" in text and "3260" in text


@pytest.mark.parametrize("n, shown", [(None, "-"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
                                      (1007484, "983.9 KiB"), (5 * 1024**3, "5.0 GiB")])
def test_human_bytes(n, shown):
    assert output.human_bytes(n) == shown


@pytest.mark.parametrize("query, words", [
    (CandleQuery("bitstamp", "BTC/USD", "1m"), "unknown exchange 'bitstamp'"),
    (CandleQuery("binance", "BTC/USDT", "2m"), "unknown interval '2m'"),
    (CandleQuery("binance", "BTC/USDT", "1m", last=0), "--last 0"),
    (CandleQuery("binance", "BTC/USDT", "1m", since_ms=2000, until_ms=1000), "inverted time range"),
    (CandleQuery("binance", "BTC/USDT", "1m", since_ms=1000, until_ms=1000), "empty time range"),
])
def test_candle_query_rejects(query, words):
    with pytest.raises(StreamappError, match=words.replace("(", r"\(")):
        query.check()


def test_open_ranges_are_fine():
    check_range(None, 5)
    check_range(5, None)
    check_range(1, 2)
    CandleQuery("kraken", "BTC/USD", "1d", last=1, since_ms=0).check()


def test_server_message_is_the_exception_line():
    exc = Exception("Received ClickHouse exception, code: 60, server response: Code: 60. DB::Exception: Unknown "
                    "table expression identifier 'x' in scope SELECT * FROM x. (UNKNOWN_TABLE) (version 26.1.2.1) "
                    "(for url http://127.0.0.1:8123)")
    assert server_message(exc) == "Unknown table expression identifier 'x' in scope SELECT * FROM x. (UNKNOWN_TABLE)"


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [[datetime(2024, 1, 1, 0, m, tzinfo=timezone.utc), Decimal(o), Decimal(h), Decimal(lo), Decimal(c),
             Decimal("2.5"), Decimal("1"), 3]
            for m, (o, h, lo, c) in enumerate([("10", "12", "9", "11"), ("11", "11", "8", "8"), ("8", "8", "8", "8")])]
    result = Result(["window_start", "open", "high", "low", "close", "volume", "quote_volume", "trade_count"], rows)
    path = plot_candles(result, tmp_path / "sub" / "c.png", title="t", interval="1m")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_plot_nothing_is_an_error(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(StreamappError, match="nothing to plot"):
        plot_candles(Result(["window_start"], []), tmp_path / "c.png", title="t", interval="1m")


class FakeClient:
    """Answers the system-table queries of ``list_tables`` like an engine with fewer columns."""

    def __init__(self, tables_columns: set[str], parts_columns: set[str], parts_fail: bool = False) -> None:
        self.tables_columns, self.parts_columns, self.parts_fail = tables_columns, parts_columns, parts_fail
        self.queries: list[str] = []

    def query(self, sql: str, parameters=None):
        from types import SimpleNamespace

        from clickhouse_connect.driver.exceptions import DatabaseError

        self.queries.append(sql)
        if sql.startswith("SELECT name FROM system.columns"):
            have = self.tables_columns if parameters["t"] == "tables" else self.parts_columns
            return SimpleNamespace(column_names=["name"], result_rows=[[c] for c in sorted(have)])
        if "FROM system.tables" in sql:
            t_rows = 7 if "total_rows" in self.tables_columns else None
            return SimpleNamespace(column_names=["name", "engine", "r", "b"],
                                   result_rows=[["silver_trades", "ReplacingMergeTree", t_rows, None],
                                                ["gold_ohlcv_1m_final", "View", None, None]])
        if "FROM system.parts" in sql:
            if self.parts_fail:
                raise DatabaseError("Code: 47. DB::Exception: Missing columns: 'bytes_on_disk'. (UNKNOWN_IDENTIFIER)")
            return SimpleNamespace(column_names=["table", "r", "b", "t"],
                                   result_rows=[["silver_trades", 5, 1024, datetime(2024, 1, 1)]])
        raise AssertionError(sql)


PARTS = {"table", "rows", "bytes_on_disk", "modification_time", "active"}


def test_list_reads_parts_where_it_can():
    from streamapp.ops.tables import list_tables

    result = list_tables(FakeClient({"name", "engine", "total_rows", "total_bytes"}, PARTS))
    assert result.rows == [["silver_trades", "ReplacingMergeTree", 5, 1024, datetime(2024, 1, 1, tzinfo=timezone.utc)],
                           ["gold_ohlcv_1m_final", "View", None, None, None]]


@pytest.mark.parametrize("tables_columns, parts_columns, parts_fail, rows", [
    ({"name", "engine", "total_rows", "total_bytes"}, set(), False, 7),  # no system.parts: totals
    ({"name", "engine", "total_rows", "total_bytes"}, PARTS, True, 7),  # system.parts errors: totals
    ({"name", "engine"}, set(), False, None),  # not even totals: nulls, still a listing
])
def test_list_degrades_when_the_engine_lacks_columns(tables_columns, parts_columns, parts_fail, rows):
    from streamapp.ops.tables import list_tables

    client = FakeClient(tables_columns, parts_columns, parts_fail)
    result = list_tables(client)
    assert [r[0] for r in result.rows] == ["silver_trades", "gold_ohlcv_1m_final"]
    assert result.rows[0][2] == rows and result.rows[0][4] is None
    if "total_rows" not in tables_columns:
        assert all("total_rows" not in q for q in client.queries if "FROM system.tables" in q)
