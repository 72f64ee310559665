"""Kraken WebSocket v2 ``trade`` channel: subscriptions, frame kinds, keys, ids.

A trade frame (format from docs.kraken.com/api/docs/websocket-v2/trade)::

    {"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"buy",
     "price":0.5147,"qty":6423.46326,"ord_type":"limit","trade_id":4665846,
     "timestamp":"2023-09-25T07:48:36.925533Z"}]}

``type`` is ``snapshot`` (the last trades, sent after subscribing with
``snapshot: true``) or ``update``. Control frames: ``{"channel":"heartbeat"}`` (every
second while subscribed), ``{"channel":"status",...}``, ``{"method":"subscribe",
"success":true,...}`` acks, ``{"method":"pong",...}`` and ``{"error":..,"success":false}``.

A frame is documented to carry one symbol's trades, but its format allows several. Such a
frame is split into one record per symbol (:func:`records`), each keyed by its symbol and
holding the frame's own bytes with only that symbol's trade objects in ``data``: a raw
record never carries two symbols, so each symbol's trades stay in order in one partition.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlencode

import orjson

from streamapp.exchanges import KRAKEN, REST_URLS, WS_URLS
from streamapp.feeds.frames import Frame, Kind
from streamapp.feeds.gaps import Gap
from streamapp.normalize.timeutil import rfc3339_to_us

EXCHANGE = KRAKEN
DEFAULT_URL = WS_URLS[EXCHANGE]
DEFAULT_REST_URL = REST_URLS[EXCHANGE]
MAX_SYMBOLS_PER_CONNECTION = 500
DEFAULT_SYMBOLS_PER_CONNECTION = 100
MAX_CONNECTION_AGE_S = None  # no documented cut-off
DEFAULT_IDLE_TIMEOUT_S = 10.0  # heartbeats come every second


def normalize_symbol(symbol: str) -> str:
    """v2 symbols are ``BASE/QUOTE`` in upper case, ``BTC`` not ``XBT``: ``btc/usd`` -> ``BTC/USD``."""
    return symbol.strip().upper()


def subscribe_messages(symbols: list[str], first_req_id: int) -> list[str]:
    # snapshot is set explicitly: after a reconnect the snapshot's trades overlap what we
    # already have (dropped as duplicates by trade id) and may fill what we missed.
    return [orjson.dumps({"method": "subscribe",
                          "params": {"channel": "trade", "symbol": symbols, "snapshot": True},
                          "req_id": first_req_id}).decode()]


def probe_message(req_id: int) -> str:
    return orjson.dumps({"method": "ping", "req_id": req_id}).decode()


def classify(text: str | bytes) -> Frame:
    """Kind, key and trade ids of one frame. Never raises."""
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return Frame(Kind.MALFORMED, detail=f"not JSON: {exc}")
    if not isinstance(msg, dict):
        return Frame(Kind.UNKNOWN, detail=f"JSON {type(msg).__name__}, expected an object (v1 frame?)")
    channel = msg.get("channel")
    if channel == "trade" and msg.get("type") in ("snapshot", "update"):
        data = msg.get("data")
        if not isinstance(data, list):
            return Frame(Kind.MALFORMED, detail="trade message without a 'data' list")
        if not data:
            return Frame(Kind.EMPTY, detail=f"empty {msg['type']}")
        ids: dict[str, list[int]] = {}
        last_time: dict[str, float] = {}
        for trade in data:
            if not isinstance(trade, dict):
                return Frame(Kind.MALFORMED, detail="trade entry is not an object")
            symbol, trade_id = trade.get("symbol"), trade.get("trade_id")
            if not isinstance(symbol, str) or not isinstance(trade_id, int) or isinstance(trade_id, bool):
                return Frame(Kind.MALFORMED, detail="trade without string 'symbol' and integer 'trade_id'")
            ids.setdefault(symbol, []).append(trade_id)
            stamp = trade.get("timestamp")
            if isinstance(stamp, str):
                try:
                    last_time[symbol] = rfc3339_to_us(stamp) / 1e6
                except ValueError:
                    pass
        return Frame(Kind.TRADE, key=data[0]["symbol"], ids=ids, last_time=last_time, detail=msg["type"])
    if channel == "heartbeat":
        return Frame(Kind.HEARTBEAT)
    if channel == "status":
        return Frame(Kind.STATUS, detail=orjson.dumps(msg.get("data")).decode())
    method = msg.get("method")
    if method == "pong":
        return Frame(Kind.PONG)
    if method in ("subscribe", "unsubscribe") and msg.get("success") is True:
        return Frame(Kind.ACK, detail=orjson.dumps(msg.get("result")).decode())
    if "error" in msg or msg.get("success") is False:
        return Frame(Kind.ERROR, detail=str(msg.get("error")))
    return Frame(Kind.UNKNOWN, detail=f"channel {channel!r} method {method!r}")


_WS = re.compile(r"[ \t\n\r]*")
_SCANNER = json.JSONDecoder()


def _data_array(text: str) -> tuple[int, int, list[tuple[int, int]]]:
    """Where the top-level ``"data"`` array of a frame is: (index of ``[``, index of ``]``,
    (start, end) of each element), so elements can be cut out byte for byte."""
    def skip(i: int) -> int:
        return _WS.match(text, i).end()

    i = skip(0)
    if text[i:i + 1] != "{":
        raise ValueError("frame is not a JSON object")
    i = skip(i + 1)
    while text[i:i + 1] != "}":
        key, i = _SCANNER.raw_decode(text, i)
        i = skip(i)
        if text[i:i + 1] != ":":
            raise ValueError("':' expected after an object key")
        i = skip(i + 1)
        if key == "data" and text[i:i + 1] == "[":
            start, spans = i, []
            i = skip(i + 1)
            while text[i:i + 1] != "]":
                _, end = _SCANNER.raw_decode(text, i)
                spans.append((i, end))
                i = skip(end)
                if text[i:i + 1] == ",":
                    i = skip(i + 1)
            return start, i, spans
        _, i = _SCANNER.raw_decode(text, i)
        i = skip(i)
        if text[i:i + 1] == ",":
            i = skip(i + 1)
    raise ValueError("frame has no 'data' array")


def records(data: bytes, frame: Frame) -> list[tuple[str, bytes, dict[str, list[int]]]]:
    """The raw records of one trade frame: (key, value, ids by symbol), one per symbol.

    A one-symbol frame is published as received. A frame with several symbols becomes one
    record per symbol (in order of first appearance): the frame's bytes with ``data`` cut down
    to that symbol's trade objects, each exactly as received (numbers keep their text)::

        {"channel":"trade","type":"update","data":[{"symbol":"A",..},{"symbol":"B",..}]}
        -> key A: {"channel":"trade","type":"update","data":[{"symbol":"A",..}]}, key B: ...
    """
    if len(frame.ids) <= 1:
        return [(frame.key or "", data, frame.ids)]
    text = data.decode("utf-8")
    start, end, spans = _data_array(text)
    symbols = [trade["symbol"] for trade in orjson.loads(data)["data"]]
    by_symbol: dict[str, list[str]] = {}
    for symbol, (a, b) in zip(symbols, spans):
        by_symbol.setdefault(symbol, []).append(text[a:b])
    return [(symbol, (text[:start + 1] + ",".join(items) + text[end:]).encode(), {symbol: frame.ids[symbol]})
            for symbol, items in by_symbol.items()]


BACKFILL_PAGE = 1000  # Trades' largest count


def backfill_since(last_time: float | None) -> str | None:
    """The first ``since`` (ns) for a gap after a trade at ``last_time`` (s): a second earlier,
    as trades share timestamps and ``since`` is exclusive. None without a reference time."""
    if last_time is None:
        return None
    return str(int((last_time - 1.0) * 1e9))


def backfill_url(rest_url: str, gap: Gap, since: str | None, limit: int = BACKFILL_PAGE) -> str | None:
    """``GET /0/public/Trades?pair=..&since=..&count=..``. Kraken pages by time, not by id: a page
    starts after ``since`` (from :func:`backfill_since`, then the previous page's ``last``);
    the normalizer keeps only the ids in the record's backfill range. None without ``since``."""
    if since is None:
        return None
    pair = gap.symbol.replace("/", "")
    query = urlencode({"pair": pair, "since": since, "count": min(limit, BACKFILL_PAGE)})
    return f"{rest_url.rstrip('/')}/0/public/Trades?{query}"


def backfill_page(body: bytes) -> tuple[list[tuple[int, float | None]], str | None]:
    """(trade id, time s) of a Trades response, and its ``last`` (the next page's ``since``)::

        {"error":[],"result":{"XXBTZUSD":[["30243.40000","0.34507674",1688669597.8277369,"b","m","",61044952]],
         "last":"1688671969993150842"}}

    Raises ``ValueError`` on an error response or another shape."""
    msg = orjson.loads(body)
    if not isinstance(msg, dict) or msg.get("error") or not isinstance(msg.get("result"), dict):
        raise ValueError(f"Kraken Trades answered {body[:200]!r}")
    result = msg["result"]
    trades = [(int(row[6]), float(row[2])) for key, rows in result.items() if key != "last" for row in rows]
    last = result.get("last")
    return trades, str(last) if last is not None else None
