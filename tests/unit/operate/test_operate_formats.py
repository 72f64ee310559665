"""``streamapp tables`` output formats: a table for people, JSON and CSV for scripts (pure, no warehouse).

JSON and CSV keep decimals exact (strings, trailing zeros dropped, never floats) and times as
ISO 8601 UTC with a ``Z``.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from rich.console import Console

from streamapp.operate import formats

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
    assert formats.cell(value) == shown


def test_json_keeps_decimals_exact_as_strings():
    assert json.loads(formats.to_json(COLUMNS, ROWS)) == [{
        "window_start": "2024-08-08T23:55:00Z", "open": "61807.7", "volume": "151.52702", "trade_count": 3260,
        "note": None}]


def test_csv_header_and_empty_null():
    assert formats.to_csv(COLUMNS, ROWS) == ("window_start,open,volume,trade_count,note\n"
                                            "2024-08-08T23:55:00Z,61807.7,151.52702,3260,\n")


def test_table_renders_every_cell():
    console = Console(record=True, width=120)
    assert formats.render(COLUMNS, ROWS, "table", title="t", console=console) is None
    text = console.export_text()
    assert "61807.7" in text and "2024-08-08T23:55:00Z" in text and "3260" in text


@pytest.mark.parametrize("n, shown", [(None, "-"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
                                      (1007484, "983.9 KiB"), (5 * 1024**3, "5.0 GiB")])
def test_human_bytes(n, shown):
    assert formats.human_bytes(n) == shown


def test_csv_round_trips_through_the_csv_module():
    rows = [["a,b", Decimal("1.50"), 'say "hi"'], ["x", None, "line\nbreak"]]
    parsed = list(csv.reader(io.StringIO(formats.to_csv(["name", "price", "note"], rows))))
    assert parsed == [["name", "price", "note"], ["a,b", "1.5", 'say "hi"'], ["x", "", "line\nbreak"]]


def test_empty_results_still_parse():
    assert json.loads(formats.to_json(["a", "b"], [])) == []
    assert formats.to_csv(["a", "b"], []) == "a,b\n"
    console = Console(record=True, width=80)
    formats.render(["a", "b"], [], "table", console=console)
    text = console.export_text()
    assert "a" in text and "(no rows)" in text


def test_nested_values_are_json_in_table_and_csv():
    rows = [[[Decimal("1.0"), datetime(2024, 1, 1)], {"k": Decimal("2.50")}]]
    assert json.loads(formats.to_json(["l", "d"], rows)) == [{"l": ["1", "2024-01-01T00:00:00Z"], "d": {"k": "2.5"}}]
    assert formats.to_csv(["l", "d"], rows).splitlines()[1] == '"[""1"", ""2024-01-01T00:00:00Z""]","{""k"": ""2.5""}"'


def test_other_timezones_are_converted_to_utc():
    from datetime import timedelta

    plus2 = timezone(timedelta(hours=2))
    assert formats.cell(datetime(2024, 1, 1, 2, 0, tzinfo=plus2)) == "2024-01-01T00:00:00Z"


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="xml"):
        formats.render(["a"], [], "xml")
