"""The pure parts of bench/freshness.py: percentiles, Gold-visibility matching, the sustained-rate rule.

bench/ is a directory of scripts, not a package: the module is loaded from its file.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[3] / "bench" / "freshness.py"
_SPEC = importlib.util.spec_from_file_location("bench_freshness", _PATH)
freshness = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = freshness  # dataclasses look their module up there
_SPEC.loader.exec_module(freshness)

Rule = freshness.Rule


@pytest.mark.parametrize(("values", "q", "expected"), [
    (list(range(1, 101)), 0.5, 50),
    (list(range(1, 101)), 0.95, 95),
    (list(range(1, 101)), 0.99, 99),
    (list(range(1, 101)), 1.0, 100),
    (list(range(100, 0, -1)), 0.99, 99),  # order of the input does not matter
    ([7.0], 0.5, 7.0),
    ([1, 2], 0.5, 1),                      # nearest rank: ceil(0.5 * 2) = 1st
    ([1, 2, 3], 0.5, 2),
    ([5, 1, 1000], 0.99, 1000),            # never interpolated: a value that occurred
])
def test_percentile_is_the_nearest_rank(values, q, expected):
    assert freshness.percentile(values, q) == expected


def test_percentile_of_nothing_is_nan_and_a_bad_quantile_is_refused():
    assert freshness.percentile([], 0.5) != freshness.percentile([], 0.5)  # nan
    with pytest.raises(ValueError, match="quantile 0"):
        freshness.percentile([1], 0)


def test_summary():
    assert freshness.summary(list(range(1000, 0, -1))) == {"p50": 500, "p95": 950, "p99": 990, "max": 1000}


def test_a_trade_is_visible_at_the_first_poll_whose_count_for_its_candle_reaches_its_position():
    # Candles 60 and 120; 5 before the run in candle 60. Trades in write order: a, b in 60, c in 120, d in 60.
    keys = [60, 60, 120, 60]
    baseline = {60: 5}
    polls = [
        (1.0, {60: 5}),             # nothing yet
        (2.0, {60: 6}),             # a
        (3.0, {60: 7, 120: 1}),     # b and c in one block
        (4.0, {60: 7, 120: 1}),
        (5.0, {60: 8, 120: 1}),     # d
    ]
    assert freshness.visible_at(keys, polls, baseline) == [2.0, 3.0, 3.0, 5.0]


def test_a_count_jumping_past_several_positions_makes_them_all_visible_at_that_poll():
    assert freshness.visible_at(["s"] * 4, [(1.0, {"s": 0}), (2.0, {"s": 3}), (3.0, {"s": 4})], {}) == \
        [2.0, 2.0, 2.0, 3.0]


def test_a_trade_no_poll_saw_is_none_and_a_missing_candle_counts_as_not_yet():
    keys = [60, 60, 120]
    polls = [(1.0, {}), (2.0, {60: 1})]
    assert freshness.visible_at(keys, polls, {}) == [2.0, None, None]


def test_the_baseline_is_subtracted_so_earlier_trades_in_the_same_candle_do_not_count():
    assert freshness.visible_at([60], [(1.0, {60: 10}), (2.0, {60: 11})], {60: 10}) == [2.0]
    assert freshness.visible_at([60], [(1.0, {60: 10}), (2.0, {60: 11})], {}) == [1.0]


def test_window_p99s_bins_by_receive_time_and_folds_the_tail_into_the_last_window():
    receive = [0.0, 1.0, 9.9, 10.0, 19.0, 20.05]  # span 20.05 s: two whole windows, the last trade in the second
    latency = [0.1, 0.2, 0.3, 1.0, 2.0, 3.0]
    assert freshness.window_p99s(receive, latency, 10.0) == [0.3, 3.0]
    assert freshness.window_p99s([], [], 10.0) == []
    assert freshness.window_p99s([5.0], [0.4], 10.0) == [0.4]


@pytest.mark.parametrize(("received", "p99s", "drained", "ok", "why"), [
    (1000, [0.9, 0.3, 0.3, 0.4, 0.3, 0.35], True, True, "sustained"),
    (1000, [9.0, 0.3, 0.3, 0.4, 0.3, 0.35], True, True, "sustained"),           # the first window is warm-up
    (1000, [0.3, 0.3, 0.3, 0.4, 0.3, 0.35], False, False, "not every trade"),
    (940, [0.3, 0.3, 0.3, 0.4, 0.3, 0.35], True, False, "received 940/s < 95%"),
    (1000, [0.3, 0.3, 0.3, 5.5, 0.3, 0.35], True, False, "p99 5.50 s > bound 5.0"),
    (1000, [0.3, 0.3, 0.8, 1.3, 1.8, 2.3], True, False, "lag grows"),           # +0.5 s every 10 s
    (1000, [0.3, 0.3, 0.5, 0.7, 0.9, 1.2], True, True, "sustained"),            # within the 1 s slack
    (1000, [], True, False, "no trades"),
])
def test_the_sustained_rule(received, p99s, drained, ok, why):
    held, reason = freshness.sustained(1000, received, p99s, drained, Rule(bound_s=5.0, slack_s=1.0))
    assert held is ok
    assert reason.startswith(why) or why in reason


def test_ingest_is_timed_from_the_first_poll_that_saw_any_to_the_first_that_saw_all():
    polls = [(0.0, 100), (0.1, 100), (0.2, 150), (1.2, 400), (2.2, 700), (2.3, 700)]
    assert freshness.ingest_span(polls, 100, 600) == (550, pytest.approx(2.0))  # 50 were in before the clock ran


@pytest.mark.parametrize("polls", [
    [(0.0, 0), (0.1, 600)],      # all at once: no rate
    [(0.0, 0), (0.1, 300)],      # never all
    [],
])
def test_ingest_without_a_span_is_not_a_rate(polls):
    timed, seconds = freshness.ingest_span(polls, 0, 600)
    assert timed == 0 and seconds != seconds


def test_rates_climb_until_one_fails_then_only_the_required_ones_run():
    rates = [1000, 2000, 5000, 8000]
    assert freshness.rates_to_run(rates, [1000, 5000], {}) == rates
    assert freshness.rates_to_run(rates, [1000, 5000], {1000: True}) == [2000, 5000, 8000]
    assert freshness.rates_to_run(rates, [1000, 5000], {1000: True, 2000: False}) == [5000]
    assert freshness.rates_to_run(rates, [1000, 5000], {1000: True, 2000: False, 5000: False}) == []
    assert freshness.rates_to_run(rates, [1000, 5000], {1000: True, 2000: True, 5000: True, 8000: False}) == []


def test_each_run_starts_its_ids_above_the_last_runs_so_the_feed_does_not_drop_them_as_already_published():
    first = freshness.fresh_first_id()
    time.sleep(0.002)
    assert freshness.fresh_first_id() > first + 1_000_000  # a run of a million trades ends below the next start
    assert first < 2**63  # trade_seq is an Int64 in Silver
