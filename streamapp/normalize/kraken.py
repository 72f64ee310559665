"""Kraken spot WebSocket v2 trades → ``Trade``: a pure function of one frame.

A v2 trade frame (the example on docs.kraken.com, websocket-v2/trade)::

    {"channel":"trade","type":"snapshot","data":[
      {"symbol":"MATIC/USD","side":"buy","price":0.5147,"qty":6423.46326,
       "ord_type":"limit","trade_id":4665846,"timestamp":"2023-09-25T07:48:36.925533Z"}]}

v2 sends prices and quantities as JSON *numbers*, so frames are parsed with
the standard library's decoder and ``parse_float=Decimal``: every number is
read exactly from its text. orjson is ~3x faster here but yields ``float``
(``0.10000000000000000001`` becomes ``0.1``), which no later step can undo;
measured on a two-trade frame, the reused ``JSONDecoder`` parses ~340k
frames/s, far above Kraken's rate. ``type`` ``snapshot`` (the last 50 trades,
sent on subscribe) and ``update`` are treated alike; snapshot trades seen
before are removed downstream by (exchange, symbol, trade_id). A frame may
carry many trades, of several symbols, or none (empty ``data`` → ``()``).
Required per trade: ``symbol``, ``side``, ``price``, ``qty``, ``trade_id``,
``timestamp`` (``ord_type`` is not used, so not required). Kraken sends no
separate event time: ``event_time`` = ``trade_time``.

Control frames are ``Ignored``: ``{"channel":"heartbeat"}``, ``{"channel":"status",...}``,
``{"method":"subscribe",...}`` acks (successful or not), ``{"method":"pong"}``.
Other channels (book, ticker, ...) are ``unsupported_message``.

WebSocket v1 frames (``[321,[[..]],"trade","XBT/USD"]`` arrays, ``{"event":..}`` objects)
are ``unsupported_message``: the feed speaks v2 only, and a v1 trade carries no trade id,
so any id made up for it (from its time) could collide and would never match the
exchange's own ids that Silver deduplicates by.

:func:`normalize_backfill` reads the REST ``GET /0/public/Trades`` body the feed
publishes to fill a gap (see its docstring).
"""

from __future__ import annotations

import json
from decimal import Decimal

from records import BUY, SELL, Trade
from streamapp.exchanges import KRAKEN
from streamapp.normalize.checks import (
    check_price,
    check_quantity,
    check_sequence,
    check_time,
    decimal_from_number,
    decimal_from_str,
    require_int,
    require_str,
)
from streamapp.normalize.result import (
    BAD_PRICE,
    BAD_QUANTITY,
    BAD_TIME,
    BAD_VALUE,
    HEARTBEAT,
    MALFORMED_JSON,
    MISSING_FIELD,
    PONG,
    STATUS,
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
from streamapp.normalize.timeutil import decimal_seconds_to_us, rfc3339_to_us, seconds_str_to_us


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


# One decoder, built once: every JSON number with a fraction or exponent becomes an exact Decimal.
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_no_constants)

_V2_CONTROL = {"heartbeat": HEARTBEAT, "status": STATUS}
_V2_METHODS = {"subscribe": SUBSCRIPTION, "unsubscribe": SUBSCRIPTION, "pong": PONG}
_V2_FIELDS = ("symbol", "side", "price", "qty", "trade_id", "timestamp")
_V2_SIDES = {"buy": BUY, "sell": SELL}
_REST_SIDES = {"b": BUY, "s": SELL}


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
    """One raw Kraken frame → its trades, ``Ignored`` or a ``Rejection``. Never raises on bad input."""
    if symbols.exchange != KRAKEN:
        raise ValueError(f"normalize.kraken got the {symbols.exchange!r} symbol map; pass a kraken SymbolMap")
    try:
        message = _DECODER.decode(bytes(frame).decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, NaN, huge ints
        return Rejection(MALFORMED_JSON, f"kraken frame is not valid UTF-8 JSON: {exc}")
    context = (receive_time_us, raw_partition, raw_offset, symbols, now_us, max_skew_us)
    try:
        if type(message) is dict:
            return _from_object(message, context)
        if type(message) is list:
            raise Reject(UNSUPPORTED_MESSAGE, "kraken frame is an array (WebSocket v1); only v2 objects are "
                         "normalized (a v1 trade has no trade id)")
        raise Reject(UNSUPPORTED_MESSAGE, f"kraken frame is {show(message)}; expected a v2 object")
    except Reject as reject:
        return reject.rejection()


def _from_object(message: dict, context: tuple) -> Result:
    channel = message.get("channel")
    if channel is not None:
        if channel == "trade":
            return _v2_trades(message, context)
        if type(channel) is str and channel in _V2_CONTROL:
            return Ignored(_V2_CONTROL[channel])
        raise Reject(UNSUPPORTED_MESSAGE, f"kraken channel {show(channel)} is not normalized here; only 'trade' is")
    method = message.get("method")
    if method is not None:
        if type(method) is str and method in _V2_METHODS:
            return Ignored(_V2_METHODS[method])
        raise Reject(UNSUPPORTED_MESSAGE, f"kraken method {show(method)} is not a control frame we know")
    if "event" in message:
        raise Reject(UNSUPPORTED_MESSAGE, f"kraken v1 event {show(message['event'])}: only WebSocket v2 is normalized")
    raise Reject(UNSUPPORTED_MESSAGE, "kraken object frame has neither 'channel' nor 'method' (WebSocket v2)")


def _symbol(symbols: SymbolMap, symbol: object, where: str) -> str:
    require_str(symbol, where)
    canonical = symbols.table.get(symbol)
    if canonical is None:
        raise Reject(
            UNKNOWN_SYMBOL, f"kraken symbol {show(symbol)} is not in the symbol map; add it to the map to accept it"
        )
    return canonical


def _v2_trades(message: dict, context: tuple) -> tuple[Trade, ...]:
    receive_time_us, raw_partition, raw_offset, symbols, now_us, max_skew_us = context
    try:
        data = message["data"]
    except KeyError:
        raise Reject(MISSING_FIELD, "kraken trade frame has no field 'data'") from None
    if type(data) is not list:
        raise Reject(WRONG_TYPE, f"kraken trade 'data' is {show(data)}; expected an array")
    trades = []
    for index, item in enumerate(data):
        where = f"kraken data[{index}]"
        if type(item) is not dict:
            raise Reject(WRONG_TYPE, f"{where} is {show(item)}; expected an object")
        try:
            symbol, side, price_n, qty_n, trade_id, timestamp = (item[k] for k in _V2_FIELDS)
        except KeyError:
            missing = [k for k in _V2_FIELDS if k not in item]
            raise Reject(
                MISSING_FIELD, f"{where} has no field {missing[0]!r} (needs {', '.join(_V2_FIELDS)})"
            ) from None
        canonical = _symbol(symbols, symbol, f"{where}.symbol")
        if type(side) is not str:
            raise Reject(WRONG_TYPE, f"{where}.side is {show(side)}; expected 'buy' or 'sell'")
        taker = _V2_SIDES.get(side)
        if taker is None:
            raise Reject(BAD_VALUE, f"{where}.side is {show(side)}; expected 'buy' or 'sell'")
        price = check_price(decimal_from_number(price_n, f"{where}.price"), f"{where}.price")
        quantity = check_quantity(decimal_from_number(qty_n, f"{where}.qty"), f"{where}.qty")
        check_sequence(require_int(trade_id, f"{where}.trade_id"), f"{where}.trade_id")
        try:
            trade_time = rfc3339_to_us(require_str(timestamp, f"{where}.timestamp"))
        except ValueError as exc:
            raise Reject(BAD_TIME, f"{where}.timestamp: {exc}") from None
        check_time(trade_time, f"{where}.timestamp", now_us, max_skew_us)
        trades.append(
            Trade(
                KRAKEN,
                canonical,
                symbol,
                str(trade_id),
                trade_id,
                price,
                quantity,
                taker,
                trade_time,
                trade_time,
                receive_time_us,
                raw_partition,
                raw_offset,
            )
        )
    return tuple(trades)


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
    """A ``GET /0/public/Trades`` body → its trades with ids in ``first_id..last_id``, or a ``Rejection``.

    The body, as Kraken documents it (one pair, named Kraken's way, plus ``last``)::

        {"error":[],"result":{"XXBTZUSD":[
          ["30243.40000","0.34507674",1688669597.8277369,"b","m","",61044952]],
         "last":"1688671969993150842"}}

    Each trade is ``[price, volume, time, side b/s, order type m/l, misc, trade_id]``:
    price and volume decimal strings, time seconds as a JSON number: read exactly, then
    rounded to the nearest µs (Kraken prints a double, ``.8277369``; see
    :func:`~streamapp.normalize.timeutil.decimal_seconds_to_us`). Our simulator sends the
    time as a decimal string: read exactly too. The symbol is the
    raw record's key, the v2 name (``BTC/USD``), not the body's pair name. Kraken pages
    by time, so the body holds trades before the gap: those are skipped once their id
    is read; the rest are checked as live trades and get the live v2 ``trade_id`` /
    ``trade_seq``, so Silver deduplicates overlaps. A non-empty ``error`` array is an
    ``unsupported_message`` rejection carrying Kraken's messages. Never raises on bad input.
    """
    if symbols.exchange != KRAKEN:
        raise ValueError(f"normalize.kraken got the {symbols.exchange!r} symbol map; pass a kraken SymbolMap")
    try:
        message = _DECODER.decode(bytes(body).decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        return Rejection(MALFORMED_JSON, f"kraken backfill body is not valid UTF-8 JSON: {exc}")
    context = (receive_time_us, raw_partition, raw_offset, symbols, now_us, max_skew_us)
    try:
        return _rest_trades(message, exchange_symbol, first_id, last_id, context)
    except Reject as reject:
        return reject.rejection()


def _rest_trades(
    message: object, exchange_symbol: str | None, first_id: int, last_id: int, context: tuple
) -> tuple[Trade, ...]:
    receive_time_us, raw_partition, raw_offset, symbols, now_us, max_skew_us = context
    if not exchange_symbol:
        raise Reject(MISSING_FIELD, "kraken backfill record has no key; it must be the v2 symbol (BTC/USD)")
    canonical = _symbol(symbols, exchange_symbol, "kraken backfill record key")
    if type(message) is not dict:
        raise Reject(UNSUPPORTED_MESSAGE, f"kraken backfill body is {show(message)}; expected the Trades object")
    if "error" not in message:
        raise Reject(MISSING_FIELD, "kraken backfill body has no field 'error'")
    errors = message["error"]
    if type(errors) is not list:
        raise Reject(WRONG_TYPE, f"kraken backfill 'error' is {show(errors)}; expected an array")
    if errors:
        raise Reject(UNSUPPORTED_MESSAGE, f"kraken backfill body is an error response: {'; '.join(map(str, errors))}")
    try:
        result = message["result"]
    except KeyError:
        raise Reject(MISSING_FIELD, "kraken backfill body has no field 'result'") from None
    if type(result) is not dict:
        raise Reject(WRONG_TYPE, f"kraken backfill 'result' is {show(result)}; expected an object")
    pages = [(pair, rows) for pair, rows in result.items() if pair != "last"]
    if len(pages) != 1:
        raise Reject(
            MISSING_FIELD if not pages else BAD_VALUE,
            f"kraken backfill 'result' has {len(pages)} pair entries ({show([p for p, _ in pages])}); expected one",
        )
    pair, rows = pages[0]
    if type(rows) is not list:
        raise Reject(WRONG_TYPE, f"kraken backfill result[{show(pair)}] is {show(rows)}; expected an array")
    trades = []
    for index, row in enumerate(rows):
        where = f"kraken backfill trade[{index}]"
        if type(row) is not list:
            raise Reject(WRONG_TYPE, f"{where} is {show(row)}; expected an array")
        if len(row) < 7:
            raise Reject(
                MISSING_FIELD, f"{where} has {len(row)} elements; needs price, volume, time, side, type, misc, trade id"
            )
        price_s, qty_s, time_v, side, _, _, trade_id = row[:7]
        check_sequence(require_int(trade_id, f"{where} trade id"), f"{where} trade id")
        if not first_id <= trade_id <= last_id:
            continue
        price = check_price(decimal_from_str(price_s, f"{where} price", BAD_PRICE), f"{where} price")
        quantity = check_quantity(decimal_from_str(qty_s, f"{where} volume", BAD_QUANTITY), f"{where} volume")
        trade_time = check_time(_rest_time(time_v, f"{where} time"), f"{where} time", now_us, max_skew_us)
        if type(side) is not str:
            raise Reject(WRONG_TYPE, f"{where} side is {show(side)}; expected 'b' or 's'")
        taker = _REST_SIDES.get(side)
        if taker is None:
            raise Reject(BAD_VALUE, f"{where} side is {show(side)}; expected 'b' or 's'")
        trades.append(
            Trade(
                KRAKEN,
                canonical,
                exchange_symbol,
                str(trade_id),
                trade_id,
                price,
                quantity,
                taker,
                trade_time,
                trade_time,
                receive_time_us,
                raw_partition,
                raw_offset,
            )
        )
    return tuple(trades)


def _rest_time(value: object, where: str) -> int:
    """REST trade time: seconds as a JSON number (``Decimal`` or int here, to the nearest µs) or a
    decimal string (exact µs)."""
    try:
        if type(value) is str:
            return seconds_str_to_us(value)
        return decimal_seconds_to_us(decimal_from_number(value, where))
    except ValueError as exc:
        raise Reject(BAD_TIME, f"{where}: {exc}") from None
