"""Reference OHLCV candles from trades: pure, exact ``Decimal``, deliberately simple.

This is the independent oracle the warehouse's Gold tables are checked
against, so it shares no code with them and favours obviousness over speed:

* a trade belongs to the window ``trade_time - trade_time % interval`` (UTC);
* open and close are the first and last trade by (trade time, trade id) —
  the numeric ``trade_seq`` where the exchange has one, else the ``trade_id`` string;
* a trade delivered more than once (same exchange, symbol, trade id) counts once;
* volume is the sum of quantities, quote volume the sum of price × quantity,
  taker-buy volumes the same over trades whose taker bought;
* all arithmetic runs in a decimal context that traps inexact results.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from records import BUY, Trade

MINUTE_US = 60_000_000

# Wide enough for any sum of decimal(38,18) products we will meet; Inexact would be a bug.
_EXACT = decimal.Context(prec=200, traps=[decimal.Inexact, decimal.Rounded, decimal.InvalidOperation])


@dataclass(frozen=True, slots=True)
class Candle:
    exchange: str
    symbol: str
    window_start_us: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    count: int
    taker_buy_volume: Decimal
    taker_buy_quote_volume: Decimal


def _order(trade: Trade) -> tuple:
    seq = trade.trade_seq
    return (trade.trade_time, seq is None, seq if seq is not None else 0, trade.trade_id)


def candles(trades: Iterable[Trade], interval_us: int = MINUTE_US) -> dict[tuple[str, str, int], Candle]:
    """Candles keyed by (exchange, symbol, window start µs), from trades in any order."""
    if interval_us <= 0:
        raise ValueError(f"interval_us must be > 0, got {interval_us}")
    unique: dict[tuple[str, str, str], Trade] = {}
    for trade in trades:
        unique.setdefault((trade.exchange, trade.symbol, trade.trade_id), trade)
    windows: dict[tuple[str, str, int], list[Trade]] = {}
    for trade in unique.values():
        start = trade.trade_time - trade.trade_time % interval_us
        windows.setdefault((trade.exchange, trade.symbol, start), []).append(trade)
    result = {}
    with decimal.localcontext(_EXACT):
        for key, group in windows.items():
            group.sort(key=_order)
            zero = Decimal(0)
            buys = [t for t in group if t.side == BUY]
            result[key] = Candle(
                exchange=key[0],
                symbol=key[1],
                window_start_us=key[2],
                open=group[0].price,
                high=max(t.price for t in group),
                low=min(t.price for t in group),
                close=group[-1].price,
                volume=sum((t.quantity for t in group), zero),
                quote_volume=sum((t.price * t.quantity for t in group), zero),
                count=len(group),
                taker_buy_volume=sum((t.quantity for t in buys), zero),
                taker_buy_quote_volume=sum((t.price * t.quantity for t in buys), zero),
            )
    return result
