"""Binance ``trade`` events → ``Trade``: a pure function of one raw frame, no I/O.

A real frame (USDⓈ-M futures, combined stream; ``tests/fixtures``)::

    {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161300010,"T":1723161300010,
     "s":"BTCUSDT","t":5266585686,"p":"61807.70","q":"0.002","X":"MARKET","m":true}}

Spot events carry ``M`` and futures events carry ``X`` instead; only the
fields used are required: ``e`` (must be ``trade``), ``s``, ``t``, ``p``, ``q``,
``T``, ``E``, ``m``. Bare events and combined-stream wrappers
``{"stream": ..., "data": {...}}`` are both accepted. ``m`` true means the
buyer was the maker, so the taker sold: side ``sell``. Prices and quantities
are decimal strings, parsed exactly (``"1e-3"`` included); times are ms, kept
as µs. ``trade_id`` is ``str(t)`` and ``trade_seq`` is ``t``.

Spot (``binance``) and USDⓈ-M futures (``binanceusdm``) are two exchanges with
unrelated trade-id sequences: the symbol map passed in says which one a frame
came from, and that id is the trade's ``exchange``.

Subscription acks (``{"result":null,"id":1}``) are ``Ignored("subscription")``,
error replies (``{"code":2,"msg":"...","id":1}``) ``Ignored("error")``; other
event types (``aggTrade``, ``kline``, ...) are rejected as
``unsupported_message``: the feed subscribes to ``@trade`` only, so they
indicate a misconfiguration worth seeing in the DLQ.

:func:`normalize_backfill` reads the REST ``GET /api/v3/historicalTrades`` (spot) or
``GET /fapi/v1/historicalTrades`` (futures) body the feed publishes to fill a gap
(see its docstring).
"""

from __future__ import annotations

import orjson

from records import BUY, SELL, Trade
from streamapp.exchanges import BINANCE, BINANCEUSDM
from streamapp.normalize.checks import (
    check_price,
    check_quantity,
    check_sequence,
    check_time,
    decimal_from_str,
    require_int,
    require_str,
)
from streamapp.normalize.result import (
    BAD_PRICE,
    BAD_QUANTITY,
    ERROR,
    MALFORMED_JSON,
    MISSING_FIELD,
    SUBSCRIPTION,
    UNKNOWN_SYMBOL,
    UNSUPPORTED_MESSAGE,
    WRONG_TYPE,
    Ignored,
    Reject,
    Rejection,
    Result,
    show,
)
from streamapp.normalize.symbols import SymbolMap

MARKETS = (BINANCE, BINANCEUSDM)  # the exchanges whose frames this module reads
_REQUIRED = ("s", "t", "p", "q", "T", "E", "m")
_REST_REQUIRED = ("id", "price", "qty", "time", "isBuyerMaker")
_JSON_KIND = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def _check_market(symbols: SymbolMap) -> None:
    if symbols.exchange not in MARKETS:
        raise ValueError(f"normalize.binance got the {symbols.exchange!r} symbol map; "
                         f"pass a {BINANCE} SymbolMap (spot) or a {BINANCEUSDM} one (USDⓈ-M futures)")


def normalize(
    frame: bytes,
    *,
    receive_time_us: int,
    raw_partition: int,
    raw_offset: int,
    symbols: SymbolMap,
    now_us: int,
    max_skew_us: int,
) -> Result:
    """One raw Binance frame → its trade, ``Ignored`` or a ``Rejection``. Never raises on bad input."""
    _check_market(symbols)
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        return Rejection(MALFORMED_JSON, f"binance frame is not valid UTF-8 JSON: {exc}")
    try:
        return _trades(message, receive_time_us, raw_partition, raw_offset, symbols, now_us, max_skew_us)
    except Reject as reject:
        return reject.rejection()


def _trades(
    message: object,
    receive_time_us: int,
    raw_partition: int,
    raw_offset: int,
    symbols: SymbolMap,
    now_us: int,
    max_skew_us: int,
) -> Result:
    if type(message) is not dict:
        kind = _JSON_KIND.get(type(message), type(message).__name__)
        raise Reject(UNSUPPORTED_MESSAGE, f"binance frame is a JSON {kind}, expected an object")
    event = message
    if "stream" in message and "data" in message:  # combined stream wrapper
        event = message["data"]
        if type(event) is not dict:
            raise Reject(WRONG_TYPE, f"binance combined-stream 'data' is {show(event)}; expected an object")
    elif "e" not in message and "id" in message:
        if "result" in message:
            return Ignored(SUBSCRIPTION)
        if "error" in message or "code" in message:
            return Ignored(ERROR)
    try:
        kind = event["e"]
    except KeyError:
        raise Reject(MISSING_FIELD, "binance event has no field 'e' (event type)") from None
    if kind != "trade":
        if type(kind) is not str:
            raise Reject(WRONG_TYPE, f"binance field 'e' is {show(kind)}; expected a string")
        raise Reject(UNSUPPORTED_MESSAGE, f"binance event type {show(kind)} is not normalized here; only 'trade' is")
    try:
        symbol, seq, price_s, qty_s, trade_ms, event_ms, maker = (event[k] for k in _REQUIRED)
    except KeyError:
        missing = [k for k in _REQUIRED if k not in event]
        raise Reject(MISSING_FIELD, f"binance trade has no field {missing[0]!r} (needs {', '.join(_REQUIRED)})") from None

    require_str(symbol, "binance field 's'")
    canonical = symbols.table.get(symbol)
    if canonical is None:
        raise Reject(
            UNKNOWN_SYMBOL, f"binance symbol {show(symbol)} is not in the symbol map; add it to the map to accept it"
        )
    check_sequence(require_int(seq, "binance field 't'"), "binance field 't'")
    price = check_price(decimal_from_str(price_s, "binance field 'p'", BAD_PRICE), "binance field 'p'")
    quantity = check_quantity(decimal_from_str(qty_s, "binance field 'q'", BAD_QUANTITY), "binance field 'q'")
    trade_time = check_time(require_int(trade_ms, "binance field 'T'") * 1000, "binance field 'T'", now_us, max_skew_us)
    event_time = check_time(require_int(event_ms, "binance field 'E'") * 1000, "binance field 'E'", now_us, max_skew_us)
    if type(maker) is not bool:
        raise Reject(WRONG_TYPE, f"binance field 'm' is {show(maker)}; expected true or false")
    return (
        Trade(
            symbols.exchange,
            canonical,
            symbol,
            str(seq),
            seq,
            price,
            quantity,
            SELL if maker else BUY,
            trade_time,
            event_time,
            receive_time_us,
            raw_partition,
            raw_offset,
        ),
    )


def normalize_backfill(
    body: bytes,
    *,
    exchange_symbol: str | None,
    first_id: int,
    last_id: int,
    receive_time_us: int,
    raw_partition: int,
    raw_offset: int,
    symbols: SymbolMap,
    now_us: int,
    max_skew_us: int,
) -> Result:
    """A ``historicalTrades`` body → its trades with ids in ``first_id..last_id``, or a ``Rejection``.

    The body, as Binance documents it for spot (``quoteQty`` and ``isBestMatch`` are not
    used; futures' ``/fapi/v1/historicalTrades`` has the same fields but ``isBestMatch``)::

        [{"id":28457,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012",
          "time":1499865549590,"isBuyerMaker":true,"isBestMatch":true}]

    It names no symbol: ``exchange_symbol`` is the raw record's key (``BTCUSDT``).
    The page may hold trades past the gap; those are skipped once their ``id`` is
    read (they are not this record's to publish), the rest are checked exactly as
    live trades. ``trade_id``/``trade_seq`` are what the live ``t`` gives, so Silver
    deduplicates overlaps; ``event_time`` is the trade time (REST has no event time).
    Never raises on bad input.
    """
    _check_market(symbols)
    try:
        page = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return Rejection(MALFORMED_JSON, f"binance backfill body is not valid UTF-8 JSON: {exc}")
    try:
        return _rest_trades(page, exchange_symbol, first_id, last_id, receive_time_us, raw_partition, raw_offset,
                            symbols, now_us, max_skew_us)
    except Reject as reject:
        return reject.rejection()


def _rest_trades(
    page: object,
    exchange_symbol: str | None,
    first_id: int,
    last_id: int,
    receive_time_us: int,
    raw_partition: int,
    raw_offset: int,
    symbols: SymbolMap,
    now_us: int,
    max_skew_us: int,
) -> tuple[Trade, ...]:
    if not exchange_symbol:
        raise Reject(MISSING_FIELD, "binance backfill record has no key; it must be the exchange symbol (BTCUSDT)")
    canonical = symbols.table.get(exchange_symbol)
    if canonical is None:
        raise Reject(
            UNKNOWN_SYMBOL,
            f"binance symbol {show(exchange_symbol)} (record key) is not in the symbol map; "
            "add it to the map to accept it",
        )
    if type(page) is not list:
        kind = _JSON_KIND.get(type(page), "object")
        raise Reject(
            UNSUPPORTED_MESSAGE,
            f"binance backfill body is a JSON {kind} ({show(page)}); expected the historicalTrades array",
        )
    trades = []
    for index, row in enumerate(page):
        where = f"binance backfill [{index}]"
        if type(row) is not dict:
            raise Reject(WRONG_TYPE, f"{where} is {show(row)}; expected an object")
        try:
            seq, price_s, qty_s, trade_ms, maker = (row[k] for k in _REST_REQUIRED)
        except KeyError:
            missing = [k for k in _REST_REQUIRED if k not in row]
            raise Reject(
                MISSING_FIELD, f"{where} has no field {missing[0]!r} (needs {', '.join(_REST_REQUIRED)})"
            ) from None
        check_sequence(require_int(seq, f"{where}.id"), f"{where}.id")
        if not first_id <= seq <= last_id:
            continue
        price = check_price(decimal_from_str(price_s, f"{where}.price", BAD_PRICE), f"{where}.price")
        quantity = check_quantity(decimal_from_str(qty_s, f"{where}.qty", BAD_QUANTITY), f"{where}.qty")
        trade_time = check_time(require_int(trade_ms, f"{where}.time") * 1000, f"{where}.time", now_us, max_skew_us)
        if type(maker) is not bool:
            raise Reject(WRONG_TYPE, f"{where}.isBuyerMaker is {show(maker)}; expected true or false")
        trades.append(
            Trade(
                symbols.exchange,
                canonical,
                exchange_symbol,
                str(seq),
                seq,
                price,
                quantity,
                SELL if maker else BUY,
                trade_time,
                trade_time,
                receive_time_us,
                raw_partition,
                raw_offset,
            )
        )
    return tuple(trades)
