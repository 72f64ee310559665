"""Pure parts of ``streamapp tables``: argument checks, error lines, list degrading, the chart (no warehouse).

The output formats are in test_operate_formats.py."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from streamapp.errors import StreamappError
from streamapp.operate.plot import plot_candles
from streamapp.operate.tables import CandleQuery, Result, check_range, check_table, server_message

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


def test_plot_writes_a_png_with_a_body_per_candle(tmp_path):
    rows = [[datetime(2024, 1, 1, 0, m, tzinfo=timezone.utc), Decimal(o), Decimal(h), Decimal(lo), Decimal(c),
             Decimal("2.5"), Decimal("1"), 3]
            for m, (o, h, lo, c) in enumerate([("10", "12", "9", "11"), ("11", "11", "8", "8"), ("8", "8", "8", "8")])]
    result = Result(["window_start", "open", "high", "low", "close", "volume", "quote_volume", "trade_count"], rows)
    path = tmp_path / "sub" / "c.png"
    assert plot_candles(result, path, title="t", interval="1m") == 3  # the flat third candle too
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_into_a_directory_is_one_clear_error(tmp_path):
    rows = [[datetime(2024, 1, 1), Decimal(1), Decimal(2), Decimal(1), Decimal(2), Decimal(1), Decimal(2), 1]]
    result = Result(["window_start", "open", "high", "low", "close", "volume", "quote_volume", "trade_count"], rows)
    with pytest.raises(StreamappError, match="cannot write the chart to"):
        plot_candles(result, tmp_path, title="t", interval="1m")


def test_plot_without_matplotlib_says_which_extra_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as when it is not installed: import fails
    with pytest.raises(StreamappError, match=r"pip install 'streamapp\[plot\]'"):
        plot_candles(Result(["window_start"], [[0]]), tmp_path / "c.png", title="t", interval="1m")
    assert not (tmp_path / "c.png").exists()


def test_plot_nothing_is_an_error(tmp_path):
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
    from streamapp.operate.tables import list_tables

    result = list_tables(FakeClient({"name", "engine", "total_rows", "total_bytes"}, PARTS))
    assert result.rows == [["silver_trades", "ReplacingMergeTree", 5, 1024, datetime(2024, 1, 1, tzinfo=timezone.utc)],
                           ["gold_ohlcv_1m_final", "View", None, None, None]]


@pytest.mark.parametrize("tables_columns, parts_columns, parts_fail, rows", [
    ({"name", "engine", "total_rows", "total_bytes"}, set(), False, 7),  # no system.parts: totals
    ({"name", "engine", "total_rows", "total_bytes"}, PARTS, True, 7),  # system.parts errors: totals
    ({"name", "engine"}, set(), False, None),  # not even totals: nulls, still a listing
])
def test_list_degrades_when_the_engine_lacks_columns(tables_columns, parts_columns, parts_fail, rows):
    from streamapp.operate.tables import list_tables

    client = FakeClient(tables_columns, parts_columns, parts_fail)
    result = list_tables(client)
    assert [r[0] for r in result.rows] == ["silver_trades", "gold_ohlcv_1m_final"]
    assert result.rows[0][2] == rows and result.rows[0][4] is None
    if "total_rows" not in tables_columns:
        assert all("total_rows" not in q for q in client.queries if "FROM system.tables" in q)


class TablesClient:
    """Answers ``SELECT name, engine FROM system.tables``."""

    def __init__(self, names):
        self.names = names

    def query(self, sql: str, parameters=None):
        from types import SimpleNamespace

        assert "FROM system.tables" in sql, sql
        return SimpleNamespace(column_names=["name", "engine"], result_rows=[[n, "MergeTree"] for n in self.names])


KNOWN = ["bronze_trades_binance", "gold_ohlcv_1m", "gold_ohlcv_1m_final", "kafka_errors", "schema_migrations",
         "silver_trades"]


@pytest.mark.parametrize("table, message", [
    ("silver_trade", "unknown table 'silver_trade': did you mean silver_trades? (`streamapp tables list` shows "
                     "them all)"),
    ("SILVER_TRADES", "did you mean silver_trades?"),
    ("gold_ohlcv_2m", "did you mean gold_ohlcv_1m, gold_ohlcv_1m_final?"),
    ("zzz", "unknown table 'zzz': the warehouse has " + ", ".join(KNOWN)),
])
def test_unknown_table_names_close_matches(table, message):
    with pytest.raises(StreamappError) as err:
        check_table(TablesClient(KNOWN), table)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unknown_table_in_an_empty_warehouse_says_migrate():
    with pytest.raises(StreamappError, match="no tables; run `streamapp db migrate`"):
        check_table(TablesClient([]), "silver_trades")


def test_known_table_gives_its_engine():
    assert check_table(TablesClient(KNOWN), "kafka_errors") == "MergeTree"


class SettingsClient:
    """A clickhouse-connect client as far as ``open_readonly`` sees it."""

    def __init__(self, readonly: str, refuse: bool = False):
        from types import SimpleNamespace

        self.server_settings = {"readonly": SimpleNamespace(value=readonly, readonly=readonly != "0")}
        self.refuse = refuse
        self.sent: dict[str, str] = {}

    def set_client_setting(self, key, value):
        self.sent[key] = value

    def query(self, sql, parameters=None):
        from clickhouse_connect.driver.exceptions import DatabaseError

        if self.refuse:
            raise DatabaseError("Code: 164. DB::Exception: Cannot modify 'readonly' setting in readonly mode. "
                                "(READONLY) (version 24.8.1.1)")


@pytest.mark.parametrize("clients, sent", [
    ([SettingsClient("0")], {"readonly": "1"}),  # a normal account: every query carries readonly=1
    ([SettingsClient("1")], {}),  # already read-only: the server refuses the setting, and enforces it anyway
    ([SettingsClient("0", refuse=True), SettingsClient("0")], {}),  # refused: a fresh client without it
])
def test_open_readonly_sends_readonly_where_accepted(monkeypatch, clients, sent):
    from streamapp.operate import tables

    made = iter(clients)
    monkeypatch.setattr(tables, "connect", lambda settings: next(made))
    client = tables.open_readonly(object())
    assert client is clients[-1] and client.sent == sent
