"""The reference candle function: exact, deduplicating; and equal to Binance's official klines."""

from __future__ import annotations

import csv
from decimal import Decimal

import pytest

from records import Trade
from tests.candles import MINUTE_US, candles
from streamapp.normalize import binance
from streamapp.normalize.symbols import DEFAULT_BINANCE_MAP
from tests.shared_data import shared_data_file


def t(trade_id, price, qty, side, time_us, seq=None, symbol="BTC/USDT") -> Trade:
    return Trade(
        "binance", symbol, symbol.replace("/", ""), str(trade_id), seq if seq is not None else trade_id,
        Decimal(price), Decimal(qty), side, time_us, time_us, 0, 0, 0,
    )  # fmt: skip


def test_small_table():
    trades = [
        t(3, "10.5", "2", "sell", MINUTE_US + 5),
        t(1, "10", "1", "buy", MINUTE_US + 5),  # same time as 3: lower id opens
        t(2, "12", "0.5", "buy", MINUTE_US + 1),
        t(4, "9", "1", "buy", 2 * MINUTE_US - 1),
        t(4, "9", "1", "buy", 2 * MINUTE_US - 1),  # duplicate delivery counts once
        t(5, "11", "1", "sell", 2 * MINUTE_US),  # next window
    ]
    result = candles(trades)
    first = result[("binance", "BTC/USDT", MINUTE_US)]
    assert (first.open, first.high, first.low, first.close) == (Decimal("12"), Decimal("12"), Decimal("9"), Decimal("9"))
    assert (first.volume, first.quote_volume, first.count) == (Decimal("4.5"), Decimal("46"), 4)
    assert (first.taker_buy_volume, first.taker_buy_quote_volume) == (Decimal("2.5"), Decimal("25"))
    assert result[("binance", "BTC/USDT", 2 * MINUTE_US)].count == 1


def test_trade_id_breaks_time_ties():
    result = candles([t(8, "2", "1", "buy", 10), t(7, "1", "1", "buy", 10)])
    (candle,) = result.values()
    assert (candle.open, candle.close) == (Decimal("1"), Decimal("2"))


def test_interval_must_be_positive():
    with pytest.raises(ValueError):
        candles([], 0)


def test_futures_trades_equal_official_klines():
    """23:55, 23:56, 23:57 on 2024-08-08 (the minutes the recording covers fully), every field."""
    frames = shared_data_file("binance", "binance_usdm_ws_trades_BTCUSDT_2024-08-08T2355_2357.jsonl").read_bytes()
    trades = []
    for frame in frames.splitlines():
        trades.extend(
            binance.normalize(
                frame, receive_time_us=0, raw_partition=0, raw_offset=0, symbols=DEFAULT_BINANCE_MAP,
                now_us=1723161600000000, max_skew_us=0,
            )
        )  # fmt: skip
    ours = candles(trades)
    klines_path = shared_data_file("binance", "binance_klines_1m_BTCUSDT-UMFUT_2024-08-08T2330_2024-08-09T0029.csv")
    with klines_path.open(newline="") as f:
        rows = {int(r["open_time"]): r for r in csv.DictReader(f)}
    minutes = [1723161300000, 1723161360000, 1723161420000]  # 23:55, 23:56, 23:57 UTC
    assert sorted(k[2] for k in ours) == [m * 1000 for m in minutes]
    for minute in minutes:
        row, candle = rows[minute], ours[("binance", "BTC/USDT", minute * 1000)]
        assert (candle.open, candle.high, candle.low, candle.close) == tuple(
            Decimal(row[k]) for k in ("open", "high", "low", "close")
        )
        assert candle.volume == Decimal(row["volume"])
        assert candle.quote_volume == Decimal(row["quote_volume"])
        assert candle.count == int(row["count"])
        assert candle.taker_buy_volume == Decimal(row["taker_buy_volume"])
        assert candle.taker_buy_quote_volume == Decimal(row["taker_buy_quote_volume"])
