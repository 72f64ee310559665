"""The cold tier's pure parts: hour planning, Arrow casting, summaries and their comparison, batches."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
import pytest

from streamapp.coldtier import schemas
from streamapp.coldtier.arrow import conform
from streamapp.coldtier.history import merge_candles
from streamapp.coldtier.offload import EPOCH, batches
from streamapp.coldtier.plan import Done, HourStat, at_risk, gold_range, lag, plan
from streamapp.coldtier.verify import compare, summarize_trades
from streamapp.errors import StreamappError
from streamapp.exchanges import EXCHANGES
from streamapp.operate.tables import Result

UTC = timezone.utc
NOW = datetime(2026, 12, 2, 12, 30, tzinfo=UTC)
H = timedelta(hours=1)
GRACE = timedelta(minutes=5)
RETENTION = timedelta(days=30)


def stat(hour: datetime, rows=10, ingest_ago=timedelta(hours=2), span=timedelta(0)) -> HourStat:
    return HourStat(hour, rows, NOW - ingest_ago - span, NOW - ingest_ago)


def _plan(stats, done=None):
    return plan(stats, done or {}, now=NOW, grace=GRACE, retention=RETENTION)


def test_old_trades_ingested_recently_are_due_once_their_ingestion_is_quiet():
    old = datetime(2021, 5, 1, 10, tzinfo=UTC)  # a 2021 capture replayed today
    assert _plan([stat(old)]).due == [stat(old)]
    # still being replayed (a row ingested a minute ago): open, not due
    assert _plan([stat(old, ingest_ago=timedelta(minutes=1))]).open == [stat(old, ingest_ago=timedelta(minutes=1))]


def test_the_current_hour_and_the_one_within_grace_are_open():
    this_hour = NOW.replace(minute=0)
    just_ended = this_hour - H  # ended 30 min ago: closed
    p = _plan([stat(this_hour, ingest_ago=timedelta(0)), stat(just_ended, ingest_ago=timedelta(minutes=40))])
    assert [s.hour for s in p.open] == [this_hour] and [s.hour for s in p.due] == [just_ended]
    p = plan([stat(just_ended, ingest_ago=timedelta(minutes=40))], {}, now=NOW, grace=timedelta(hours=1),
             retention=RETENTION)
    assert p.open and not p.due


def test_done_hours_are_skipped_until_late_trades_arrive():
    hour = datetime(2024, 8, 8, 23, tzinfo=UTC)
    s = stat(hour)
    done = {hour: Done(hour, s.rows, s.max_ingest)}
    assert _plan([s], done).done == [s]
    later = HourStat(hour, s.rows + 1, s.min_ingest, s.max_ingest + timedelta(minutes=30))
    assert _plan([later], done).due == [later]


def test_an_hour_the_ttl_may_have_cut_is_never_offloaded():
    hour = datetime(2024, 8, 8, 23, tzinfo=UTC)
    cut = stat(hour, ingest_ago=timedelta(days=29), span=timedelta(days=2))  # oldest row ingested 31 days ago
    p = _plan([cut])
    assert p.expired == [cut] and not p.due
    assert lag(p, NOW) == NOW - (hour + H)


def test_at_risk_names_hours_the_ttl_deletes_within_the_horizon():
    soon = stat(datetime(2024, 1, 1, tzinfo=UTC), ingest_ago=timedelta(days=29, hours=20))
    later = stat(datetime(2024, 1, 2, tzinfo=UTC), ingest_ago=timedelta(days=1))
    p = _plan([soon, later])
    risky = at_risk(p, now=NOW, retention=RETENTION, horizon=timedelta(days=1))
    assert [(s.hour, deleted) for s, deleted in risky] == [(soon.hour, soon.min_ingest + RETENTION)]
    assert at_risk(_plan([soon], {soon.hour: Done(soon.hour, soon.rows, soon.max_ingest)}), now=NOW,
                   retention=RETENTION, horizon=timedelta(days=1)) == []


@pytest.mark.parametrize(("interval", "hour", "expected"), [
    (timedelta(minutes=1), datetime(2024, 1, 1, 5, tzinfo=UTC),
     (datetime(2024, 1, 1, 5, tzinfo=UTC), datetime(2024, 1, 1, 6, tzinfo=UTC))),
    (H, datetime(2024, 1, 1, 5, tzinfo=UTC), (datetime(2024, 1, 1, 5, tzinfo=UTC), datetime(2024, 1, 1, 6, tzinfo=UTC))),
    (timedelta(days=1), datetime(2024, 1, 1, 5, tzinfo=UTC),
     (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))),
])
def test_gold_range_covers_the_windows_an_hour_changes(interval, hour, expected):
    assert gold_range(hour, interval, EPOCH) == expected


def test_batches_join_consecutive_hours_of_one_day_only():
    day = datetime(2024, 1, 1, 22, tzinfo=UTC)
    hours = [day, day + H, day + 2 * H, day + 3 * H, day + 6 * H]  # 22, 23 | 00, 01 | 04
    groups = batches([HourStat(h, 1) for h in hours])
    assert [[s.hour for s in g] for g in groups] == [[day, day + H], [day + 2 * H, day + 3 * H], [day + 6 * H]]


def test_conform_casts_to_the_table_schema_and_refuses_loss():
    target = schemas.GOLD_SCHEMA.as_arrow()
    t = datetime(2024, 1, 1, tzinfo=UTC)
    row = {"exchange": "binance", "symbol": "BTC/USDT", "window_start": t, "open": Decimal("1.5"),
           "high": Decimal("2"), "low": Decimal("1"), "close": Decimal("1.75"), "volume": Decimal("3"),
           "quote_volume": Decimal("4.125"), "trade_count": 3, "taker_buy_volume": Decimal("1"),
           "taker_buy_quote_volume": Decimal("1.5"), "first_trade_time": t, "last_trade_time": t}
    types = {"quote_volume": pa.decimal256(76, 36), "taker_buy_quote_volume": pa.decimal256(76, 36),
             "trade_count": pa.uint64()}
    data = pa.table({k: pa.array([v], types.get(k)) for k, v in row.items()})  # ClickHouse's types, nullable
    out = conform(data, target)
    assert out.schema == target and out.to_pylist()[0]["quote_volume"] == Decimal("4.125")
    data = data.set_column(data.column_names.index("quote_volume"), "quote_volume",
                           pa.array([Decimal("4." + "1" * 30)], pa.decimal256(76, 36)))
    with pytest.raises(StreamappError, match="quote_volume .* does not fit decimal128"):
        conform(data, target)
    nulls = data.set_column(0, "exchange", pa.array([None], pa.string()))
    with pytest.raises(StreamappError, match="exchange has 1 null"):
        conform(nulls, target)
    with pytest.raises(StreamappError, match="columns symbol are missing"):
        conform(data.drop(["symbol"]), target)


def test_summaries_are_exact_and_compare_names_every_difference():
    t = datetime(2024, 1, 1, 5, 10, tzinfo=UTC)
    rows = pa.table({"exchange": ["binance"] * 3, "symbol": ["BTC/USDT"] * 3, "trade_time": [t, t + H / 2, t + H],
                     "price": pa.array([Decimal("0.1"), Decimal("0.2"), Decimal("3")], pa.decimal128(38, 18)),
                     "quantity": pa.array([Decimal("0.3"), Decimal("0.000000000000000001"), Decimal("1")],
                                          pa.decimal128(38, 18))})
    cold = summarize_trades("silver_trades", rows)
    key = ("silver_trades", "binance", "BTC/USDT", datetime(2024, 1, 1, 5, tzinfo=UTC))
    assert cold[key] == (2, Decimal("0.300000000000000001"), Decimal("0.0300000000000000002"), t, t + H / 2)
    hot = dict(cold)
    assert compare(hot, cold) == []
    hot[key] = (2, Decimal("0.300000000000000002"), *cold[key][2:])
    lost = ("silver_trades", "binance", "BTC/USDT", datetime(2024, 1, 1, 6, tzinfo=UTC))
    del cold[lost]
    diffs = compare(hot, cold)
    assert [(d.time.hour, d.what, d.hot, d.cold) for d in diffs] == [
        (5, "sum_quantity", Decimal("0.300000000000000002"), Decimal("0.300000000000000001")),
        (6, "missing in cold", 1, None)]


def test_merge_candles_prefers_hot_and_keeps_the_newest():
    t = [datetime(2024, 1, 1, 0, i, tzinfo=UTC) for i in range(4)]
    cold = Result(["window_start", "open"], [[t[0], "c0"], [t[1], "c1"], [t[2], "c2"]])
    hot = Result(["window_start", "open"], [[t[2].replace(tzinfo=None), "h2"], [t[3], "h3"]])
    assert [r[1] for r in merge_candles(cold, hot, 3).rows] == ["c1", "h2", "h3"]


def test_every_exchange_has_a_bronze_table_and_names_match_the_hot_tier():
    names = [t.name for t in schemas.cold_tables()]
    assert [n for n in names if n.startswith("bronze_")] == [f"bronze_trades_{e}" for e in EXCHANGES]
    assert "silver_trades" in names and "raw_trades" in names and len(set(names)) == len(names)
    for table in schemas.cold_tables():
        assert [f.name for f in table.spec.fields] == [f"{table.time_column}_day", "exchange"]
