"""`streamapp status`'s pure parts: the freshness window, lag arithmetic, and the screen for a broken stack."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from streamapp import groups, topics
from streamapp.errors import StreamappError
from streamapp.operate.status import group_topics, lag, parse_window, render


@pytest.mark.parametrize(("text", "seconds"), [("all", None), ("ALL", None), ("90s", 90), ("15m", 900),
                                               ("1h", 3600), ("7d", 604800), (" 2h ", 7200)])
def test_window(text, seconds):
    assert parse_window(text) == seconds


@pytest.mark.parametrize("text", ["", "0h", "1w", "h", "-1h", "1.5h", "forever"])
def test_bad_window(text):
    with pytest.raises(StreamappError, match="--window"):
        parse_window(text)


@pytest.mark.parametrize(("ends", "committed", "expected"), [
    ({0: (0, 10), 1: (0, 5)}, {0: 10, 1: 5}, {"committed": 15, "end": 15, "lag": 0, "partitions_without_commit": 0}),
    ({0: (0, 10), 1: (0, 5)}, {0: 4, 1: 5}, {"committed": 9, "end": 15, "lag": 6, "partitions_without_commit": 0}),
    # Nothing committed: all that is retained (high - low) is lag; empty partitions do not count.
    ({0: (3, 10), 1: (0, 0)}, {}, {"committed": 0, "end": 10, "lag": 7, "partitions_without_commit": 1}),
    ({0: (0, 10)}, {0: -1001}, {"committed": 0, "end": 10, "lag": 10, "partitions_without_commit": 1}),
])
def test_lag_is_end_minus_committed_summed(ends, committed, expected):
    assert lag(ends, committed) == expected


def test_the_groups_are_the_normalizer_on_raw_and_clickhouse_per_exchange_on_normalized():
    wanted = group_topics()
    assert wanted[groups.NORMALIZER] == topics.RAW_TOPICS
    assert wanted[groups.clickhouse("binance")] == (topics.normalized("binance"),)
    assert set(wanted) == {groups.NORMALIZER, *groups.CLICKHOUSE_GROUPS}


def test_an_unreachable_stack_is_one_line_per_service():
    report = {
        "healthy": False,
        "broker": {"reachable": False, "address": "h:1", "error": "cannot reach the broker at h:1: refused"},
        "topics": None, "groups": None,
        "registry": {"reachable": False, "url": "http://h:2", "error": "cannot read subjects: refused"},
        "warehouse": {"reachable": False, "address": "h:3", "window_s": 3600, "error": "cannot reach ClickHouse"},
    }
    out = io.StringIO()
    render(report, Console(file=out, width=200))
    text = out.getvalue()
    assert text.count("UNREACHABLE") == 3
    assert "cannot reach the broker at h:1: refused" in text
    assert "topics, consumer groups: unknown (broker unreachable)" in text
    assert text.rstrip().endswith("UNHEALTHY: see the lines above")
