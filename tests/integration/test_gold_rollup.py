"""Gold stores 1m states; 5m…1d roll them up when read (migration 0008). A warehouse upgraded from
0007 shows the same candles at every interval as before, and keeps every candle exact afterwards.

Trades are delivered into Bronze as the Kafka table's view does, with a symbol of their own,
new each run, in a database of their own migrated up to 0007 first.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from streamapp import migrations, tables
from streamapp.clients.clickhouse import connect
from tests.integration.test_dedup_any_age import DAY, deliver, expected_candles, make_trades
from tests.integration.test_pipeline import warehouse_candles

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def shifted(trades: list[dict], by: timedelta) -> list[dict]:
    """The same trades ``by`` later (the same ids: use another symbol)."""
    out = []
    for t in trades:
        at = t["at"] + by
        out.append({**t, "at": at, "time": t["time"] + int(by.total_seconds()), "order": (at, t["order"][1])})
    return out


def candles(client, symbol: str) -> dict[str, dict]:
    """Every interval's candles of ``symbol`` over DAY and the two days after it."""
    within = {"symbols": [symbol], "first": int(DAY.timestamp()), "last": int(DAY.timestamp()) + 3 * 86400}
    return {interval: warehouse_candles(client, "binance", interval, within) for interval in tables.INTERVALS}


def engine(client, table: str) -> str:
    return client.command("SELECT engine FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
                          parameters={"t": table})


def test_an_upgraded_warehouse_shows_the_same_candles_at_every_interval(scratch_database):
    settings = scratch_database
    client = connect(settings)
    rollup = next(m for m in migrations.discover() if m.name == "gold_rolled_up_from_1m")
    for migration in migrations.pending(client, migrations.discover()):
        if migration.version < rollup.version:
            migrations.apply(client, settings, migration)
    assert engine(client, tables.gold("1d")) == "AggregatingMergeTree"
    # Two hours on DAY, and two hours across the next midnight (1d windows split there).
    symbol = f"T{uuid.uuid4().hex[:8].upper()}/USDT"
    trades = [*make_trades(symbol, 1_000, 300), *shifted(make_trades(symbol, 2_000, 300), timedelta(hours=13))]
    assert {t["at"].date() for t in trades} == {DAY.date(), (DAY + timedelta(days=1)).date()}
    ingest = DAY + timedelta(days=1)
    deliver(client, "binance", trades[:250], ingest)
    deliver(client, "binance", trades[250:], ingest)
    before = candles(client, symbol)
    assert before == expected_candles(trades)  # each interval computed from the trades by its own view
    assert all(before[interval] for interval in tables.INTERVALS)

    migrations.apply(client, settings, rollup)
    assert {i: engine(client, tables.gold(i)) for i in tables.INTERVALS} == {
        i: "AggregatingMergeTree" if i == tables.STORED_INTERVAL else "View" for i in tables.INTERVALS}
    assert candles(client, symbol) == before
    assert migrations.check(client, settings, migrations.discover()) == []  # `db status`: no drift

    # After the upgrade: new trades in old and new windows, some delivered again.
    fresh = [*make_trades(symbol, 1_300, 40), *shifted(make_trades(symbol, 2_300, 40), timedelta(hours=13))]
    deliver(client, "binance", trades[::7] + fresh + trades[3::11], ingest)
    assert candles(client, symbol) == expected_candles(trades + fresh)
    # Readers of the states (argMinMerge and friends) read a rolled-up interval as they read a table.
    day_open = client.command(f"SELECT argMinMerge(open) FROM {tables.gold('1d')} WHERE symbol = {{s:String}} "
                              "AND window_start = {d:DateTime}", parameters={"s": symbol, "d": DAY.replace(tzinfo=None)})
    assert str(day_open) == str(expected_candles(trades + fresh)["1d"][(symbol, int(DAY.timestamp()))]["open"])
