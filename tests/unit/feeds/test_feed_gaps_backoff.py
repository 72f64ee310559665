"""Pure parts of the feed: the gap tracker, backoff, symbol spreading, capture lines."""

import random

import pytest

from streamapp.feeds.gaps import Gap, GapTracker
from streamapp.simulator.capture import capture_line
from streamapp.backoff import backoff_delay
from streamapp.feeds.transport import spread


@pytest.mark.parametrize("frames, new, gaps, dups", [
    ([[1], [2], [3]], [True, True, True], [], 0),
    ([[1], [4]], [True, True], [Gap("S", 2, 3)], 0),
    ([[1], [2], [2], [1]], [True, True, False, False], [], 2),           # overlap duplicates
    ([[5, 6, 7], [6, 7, 8, 10]], [True, True], [Gap("S", 9, 9)], 2),    # Kraken: several ids per frame
    ([[1], [10], [5]], [True, True, False], [Gap("S", 2, 9)], 1),        # late id after a gap: not new
])
def test_gap_tracker(frames, new, gaps, dups):
    tracker = GapTracker()
    seen = [tracker.observe("S", ids) for ids in frames]
    assert [o.new for o in seen] == new
    assert [g for o in seen for g in o.gaps] == gaps
    assert sum(o.duplicates for o in seen) == dups


def test_gap_tracker_is_per_symbol():
    tracker = GapTracker()
    tracker.observe("A", [1])
    tracker.observe("B", [100])
    assert tracker.observe("A", [2]).gaps == ()
    assert tracker.observe("B", [103]).gaps == (Gap("B", 101, 102),)
    assert Gap("B", 101, 102).size == 2


def test_a_frame_not_published_opens_the_next_gap():
    tracker = GapTracker()
    tracker.observe("S", [1])
    seen = tracker.observe("S", [4, 5])  # 2-3 missing; 4-5 then refused by the producer
    assert seen.gaps == (Gap("S", 2, 3),) and (seen.first_new, seen.last_new) == (4, 5)
    tracker.unpublished("S", seen.first_new)
    assert tracker.observe("S", [6]).gaps == (Gap("S", 4, 5),)  # not again 2-3: already being backfilled


def test_the_first_frame_refused_is_a_gap_too():
    tracker = GapTracker()
    tracker.unpublished("S", tracker.observe("S", [10]).first_new)
    assert tracker.observe("S", [11]).gaps == (Gap("S", 10, 10),)


def test_a_resumed_tracker_finds_the_gap_across_a_restart():
    tracker = GapTracker()
    tracker.resume("S", 100)
    assert tracker.observe("S", [100]).new is False  # published before the restart (Kraken's snapshot)
    assert tracker.observe("S", [104]).gaps == (Gap("S", 101, 103),)


def test_backoff_is_capped_exponential_with_jitter():
    rng = random.Random(1)
    for attempt, bound in [(0, 0.5), (1, 1.0), (3, 4.0), (6, 30.0), (40, 30.0)]:
        delays = [backoff_delay(attempt, 0.5, 30.0, rng) for _ in range(200)]
        assert all(bound / 2 <= d <= bound for d in delays)
        assert max(delays) - min(delays) > bound / 5  # jittered


def test_backoff_without_jitter_doubles_up_to_the_cap():
    # the backfill retries and the worker's wait for the registry: 1, 2, 4, ... capped
    assert [backoff_delay(attempt, 1.0, 30.0, jitter=False) for attempt in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff_delay(100, 0.5, 10.0, jitter=False) == 10.0


def test_spread_respects_the_per_connection_limit():
    assert spread(["A", "B", "C", "A", "D", "E"], 2) == [["A", "B"], ["C", "D"], ["E"]]
    assert len(spread([f"S{i}" for i in range(2500)], 1024)) == 3


def test_capture_line():
    assert capture_line(17, "binance", b'{"a":1}', "c1") == \
        b'{"receive_time_us":17,"exchange":"binance","connection_id":"c1","frame":"{\\"a\\":1}"}\n'
