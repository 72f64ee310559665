"""Replaying is harmless at any age: a trade delivered again after Silver forgot it changes no candle.

Silver keeps a trade for the hot retention (TTL by ingest time), Gold keeps its
candles for ten years. These tests deliver trades into Bronze as the Kafka table's
view does, let Silver's TTL really expire them (the trades are ingested a day past
the hot retention, then a TTL merge runs), deliver them again and compare every
Gold candle. Trades use a symbol of their own, new each run.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from streamapp import migrations, tables
from streamapp.clients.clickhouse import connect
from tests.integration.test_pipeline import reference_candles, warehouse_candles

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# An hour of history, older than Silver's retention and younger than Gold's.
DAY = datetime(2023, 3, 14, tzinfo=timezone.utc)
BRONZE_COLUMNS = ["exchange", "symbol", "exchange_symbol", "trade_id", "trade_seq", "price", "quantity", "side",
                  "trade_time", "event_time", "receive_time", "raw_partition", "raw_offset",
                  "_topic", "_partition", "_offset", "_timestamp", "ingest_time"]


def make_trades(symbol: str, first_id: int, count: int) -> list[dict]:
    """``count`` trades of ``symbol`` spread over DAY 10:00-11:59, prices and sides varying."""
    trades = []
    for n in range(count):
        trade_id = first_id + n
        at = DAY + timedelta(hours=10, seconds=(trade_id * 137) % 7200, microseconds=trade_id % 1000)
        trades.append({"symbol": symbol, "id": str(trade_id), "seq": trade_id, "at": at,
                       "time": Decimal(int(at.timestamp() * 1_000_000)) / 1_000_000, "order": (at, trade_id),
                       "price": Decimal("100.5") + Decimal(trade_id % 17) / 4, "qty": Decimal(1 + trade_id % 5) / 8,
                       "buy": trade_id % 3 == 0})
    return trades


def deliver(client, exchange: str, trades: list[dict], ingest_time: datetime) -> None:
    """Insert ``trades`` into Bronze as the Kafka table's view does (its views run on the insert)."""
    rows = [[exchange, t["symbol"], t["symbol"].replace("/", ""), t["id"], t["seq"], t["price"], t["qty"],
             "buy" if t["buy"] else "sell", t["at"], t["at"], t["at"], 0, 0,
             "test", 0, 0, None, ingest_time] for t in trades]
    client.insert(tables.bronze(exchange), rows, column_names=BRONZE_COLUMNS)


def silver_rows(client, exchange: str, symbol: str) -> int:
    return client.command(f"SELECT count() FROM {tables.SILVER} WHERE exchange = {{e:String}} AND symbol = {{s:String}}",
                          parameters={"e": exchange, "s": symbol})


def expire_silver(client) -> None:
    """Run Silver's TTL on the test's day: a real TTL merge, as the hot retention ends."""
    client.command(f"OPTIMIZE TABLE {tables.SILVER} PARTITION {DAY:%Y%m%d} FINAL")


def all_candles(client, exchange: str, symbol: str) -> dict[str, dict]:
    within = {"symbols": [symbol], "first": int(DAY.timestamp()), "last": int(DAY.timestamp()) + 86400}
    return {interval: warehouse_candles(client, exchange, interval, within) for interval in tables.INTERVALS}


def expected_candles(trades: list[dict]) -> dict[str, dict]:
    seconds = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "1d": 86400}
    return {interval: reference_candles(trades, seconds[interval]) for interval in tables.INTERVALS}


def check_replay_after_expiry(client, exchange: str, symbol: str, delivered: list[dict]) -> None:
    """``delivered`` reached Gold long ago; Silver forgets them; they and new trades are delivered again."""
    before = all_candles(client, exchange, symbol)
    assert before == expected_candles(delivered)
    expire_silver(client)
    assert silver_rows(client, exchange, symbol) == 0  # Silver's copy has expired

    # The same trades again, today (a replay), and again (a second replay) with new trades among them.
    now = datetime.now(timezone.utc)
    deliver(client, exchange, delivered, now)
    assert all_candles(client, exchange, symbol) == before
    fresh = make_trades(symbol, int(delivered[-1]["id"]) + 1, 7)
    deliver(client, exchange, delivered[::2] + fresh + delivered[1::2], now)
    assert all_candles(client, exchange, symbol) == expected_candles(delivered + fresh)
    assert silver_rows(client, exchange, symbol) == len(fresh)


@pytest.mark.parametrize("exchange", ["binance", "kraken"])
def test_a_trade_delivered_again_after_silver_expired_it_changes_no_candle(migrated, exchange):
    client = connect(migrated)
    symbol = f"T{uuid.uuid4().hex[:8].upper()}/USDT"
    trades = make_trades(symbol, 1_000, 60)
    # Delivered a day more than the hot retention ago: Gold counted them, Silver's TTL drops them.
    long_ago = datetime.now(timezone.utc) - timedelta(days=migrated.hot_retention_days + 1)
    deliver(client, exchange, trades[:30], long_ago)
    deliver(client, exchange, trades[30:], long_ago)
    check_replay_after_expiry(client, exchange, symbol, trades)


def test_an_upgraded_warehouse_keeps_dedup_for_trades_silver_held_before(scratch_database):
    """Trades in Silver before the identity table existed are deduplicated after they expire."""
    settings = scratch_database
    client = connect(settings)
    upgrade = next(m.version for m in migrations.discover() if m.name == "trade_identities")
    for migration in migrations.pending(client, migrations.discover()):
        if migration.version < upgrade:
            migrations.apply(client, settings, migration)
    symbol = f"T{uuid.uuid4().hex[:8].upper()}/USDT"
    trades = make_trades(symbol, 5_000, 40)
    # Silver holds them while the upgrade runs, and its TTL expires them 15 s later.
    expires = datetime.now(timezone.utc) + timedelta(seconds=15)
    deliver(client, "binance", trades, expires - timedelta(days=settings.hot_retention_days))
    assert silver_rows(client, "binance", symbol) == len(trades)

    for migration in migrations.pending(client, migrations.discover()):
        migrations.apply(client, settings, migration)
    assert datetime.now(timezone.utc) < expires, "the upgrade took too long: Silver expired the trades before it ran"
    assert client.command(f"SELECT count() FROM {tables.TRADE_IDENTITIES} FINAL WHERE symbol = {{s:String}}",
                          parameters={"s": symbol}) == len(trades)
    time.sleep(max(0.0, (expires - datetime.now(timezone.utc)).total_seconds()) + 1)
    check_replay_after_expiry(client, "binance", symbol, trades)

