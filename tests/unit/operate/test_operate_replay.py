"""`streamapp replay`'s pure parts: times, offsets, speed and the ranges it reads."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from streamapp import headers as raw_headers
from streamapp.errors import StreamappError
from streamapp.operate.replay import (
    capture_records, check_offset_range, check_time_range, parse_offsets, parse_speed, parse_symbols, plan_ranges,
)
from streamapp.operate.timeparse import format_ms, parse_time_ms

CAPTURES = Path(__file__).resolve().parents[3] / "streamapp" / "captures"


@pytest.mark.parametrize(("text", "ms"), [
    ("1723161300000", 1723161300000),
    ("2024-08-08T23:55:00Z", 1723161300000),
    ("2024-08-08T23:55:00", 1723161300000),  # no zone: UTC
    ("2024-08-08T23:55:00.123+00:00", 1723161300123),
    ("2024-08-09T01:55:00+02:00", 1723161300000),
    ("2024-08-08", 1723075200000),
    (" 2024-08-08T23:55:00Z ", 1723161300000),
])
def test_times_are_iso_8601_or_epoch_ms(text, ms):
    assert parse_time_ms(text) == ms


@pytest.mark.parametrize("text", ["yesterday", "", "2024-13-01", "-5", "1.5e12"])
def test_a_bad_time_names_the_option_and_the_formats(text):
    with pytest.raises(StreamappError, match=r"--since .* is not a time: use ISO 8601 .* epoch milliseconds"):
        parse_time_ms(text, "--since")


def test_format_ms_is_iso_utc():
    assert format_ms(1723161300123) == "2024-08-08T23:55:00.123Z"


@pytest.mark.parametrize(("text", "parsed"), [
    (None, None), ("0", 0), ("100", 100), ("0:5", {0: 5}), ("0:5,2:7", {0: 5, 2: 7}), (" 1:0 ", {1: 0}),
])
def test_offsets_are_global_or_per_partition(text, parsed):
    assert parse_offsets(text, "--start-offset") == parsed


@pytest.mark.parametrize("text", ["x", "-1", "0:-1", "a:1", "0:1,0:2", "1:", ""])
def test_bad_offsets_are_refused(text):
    with pytest.raises(StreamappError, match="--end-offset .* is not an offset"):
        parse_offsets(text, "--end-offset")


@pytest.mark.parametrize(("text", "speed"), [("max", None), ("MAX", None), ("1", 1.0), ("10", 10.0), ("0.5", 0.5)])
def test_speed(text, speed):
    assert parse_speed(text) == speed


@pytest.mark.parametrize("text", ["0", "-2", "fast", "inf", "nan"])
def test_bad_speed(text):
    with pytest.raises(StreamappError, match="--speed"):
        parse_speed(text)


def test_symbols_are_keys_comma_separated_any_number_of_times():
    assert parse_symbols(("BTCUSDT,ETHUSDT", " XBT/USD ")) == {b"BTCUSDT", b"ETHUSDT", b"XBT/USD"}
    assert parse_symbols(()) is None


@pytest.mark.parametrize(("since", "until"), [(5, 5), (6, 5)])
def test_an_empty_or_inverted_time_range_is_refused(since, until):
    with pytest.raises(StreamappError, match="empty or inverted"):
        check_time_range(since, until)


def test_a_time_range_with_one_end_open_is_fine():
    check_time_range(None, 5)
    check_time_range(5, None)
    check_time_range(4, 5)


@pytest.mark.parametrize(("start", "end"), [(5, 5), (6, 5), ({0: 5}, {0: 3}), (7, {1: 3}), ({2: 9}, 9)])
def test_an_empty_or_inverted_offset_range_is_refused(start, end):
    with pytest.raises(StreamappError, match="empty or inverted"):
        check_offset_range(start, end)


WATERMARKS = {0: (0, 100), 1: (10, 50), 2: (0, 0)}


@pytest.mark.parametrize(("kwargs", "ranges"), [
    ({}, {0: (0, 100), 1: (10, 50), 2: (0, 0)}),
    ({"start": 20}, {0: (20, 100), 1: (20, 50), 2: (0, 0)}),  # never past the high watermark
    ({"start": 5, "end": 40}, {0: (5, 40), 1: (10, 40), 2: (0, 0)}),
    ({"start": {1: 30}}, {1: (30, 50)}),  # per partition: only those named
    ({"start": {0: 10}, "end": {1: 20}}, {0: (10, 100), 1: (10, 20)}),
    ({"end": 500}, {0: (0, 100), 1: (10, 50), 2: (0, 0)}),  # clamped to the watermarks
    ({"since": {0: 60, 1: -1, 2: -1}}, {0: (60, 100), 1: (50, 50), 2: (0, 0)}),
    ({"until": {0: 60, 1: -1, 2: -1}}, {0: (0, 60), 1: (10, 50), 2: (0, 0)}),
    ({"start": 70, "until": {0: 60, 1: 40, 2: -1}}, None),  # nothing left: refused
])
def test_plan_ranges(kwargs, ranges):
    if ranges is None:
        with pytest.raises(StreamappError, match="nothing to replay"):
            plan_ranges("t", WATERMARKS, **kwargs)
    else:
        assert plan_ranges("t", WATERMARKS, **kwargs) == ranges


def test_a_range_with_no_records_says_what_the_topic_holds():
    with pytest.raises(StreamappError, match=r"nothing to replay: t has no records .*0: 0-100, 1: 10-50, 2: 0-0"):
        plan_ranges("t", WATERMARKS, start=100)


def test_an_unknown_partition_is_refused():
    with pytest.raises(StreamappError, match="t has no partition 7"):
        plan_ranges("t", WATERMARKS, start={7: 0})


def test_capture_frames_become_the_raw_records_the_feed_writes(tmp_path):
    path = tmp_path / "c.jsonl.gz"
    trade = ('{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161300031,"s":"BTCUSDT","t":1,"p":"1.0",'
             '"q":"1.0","T":1723161300030,"m":false,"M":true}}')
    kraken = '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","trade_id":1}]}'
    lines = [
        {"receive_time_us": 1723161300031999, "exchange": "binance", "frame": trade},
        {"receive_time_us": 1723161300000000, "exchange": "kraken", "frame": kraken},
        {"receive_time_us": 1723161300040000, "exchange": "binance", "frame": '{"result":null,"id":1}'},
    ]
    path.write_bytes(gzip.compress(b"\n".join(orjson.dumps(line) for line in lines)))
    records, other = capture_records([path])
    assert other == 1  # the ack: the feed publishes trade frames only
    assert [(r.key, r.value, r.timestamp_ms, r.partition) for r in records] == [
        (b"BTC/USD", kraken.encode(), 1723161300000, None),  # receive-time order
        (b"BTCUSDT", trade.encode(), 1723161300031, None),
    ]
    assert records[1].headers == [(raw_headers.RECEIVE_TIME_US, b"1723161300031999"),
                                  (raw_headers.CONNECTION_ID, b"replay"), (raw_headers.SOURCE, b"ws")]


def test_the_bundled_captures_replay_whole():
    records, other = capture_records([CAPTURES / "binance_spot_btcusdt_trades_2024-08-08.jsonl.gz"])
    assert len(records) == 4335 and other == 0
    assert {r.key for r in records} == {b"BTCUSDT"}
