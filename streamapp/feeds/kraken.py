"""Kraken WebSocket v2 ``trade`` channel: subscriptions, frame kinds, keys, ids.

A trade frame (format from docs.kraken.com/api/docs/websocket-v2/trade)::

    {"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"buy",
     "price":0.5147,"qty":6423.46326,"ord_type":"limit","trade_id":4665846,
     "timestamp":"2023-09-25T07:48:36.925533Z"}]}

``type`` is ``snapshot`` (the last trades, sent after subscribing with
``snapshot: true``) or ``update``. Control frames: ``{"channel":"heartbeat"}`` (every
second while subscribed), ``{"channel":"status",...}``, ``{"method":"subscribe",
"success":true,...}`` acks, ``{"method":"pong",...}`` and ``{"error":..,"success":false}``.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

import orjson

from streamapp.exchanges import KRAKEN
from streamapp.feeds.frames import Frame, Kind
from streamapp.feeds.gaps import Gap

EXCHANGE = KRAKEN
DEFAULT_URL = "wss://ws.kraken.com/v2"
DEFAULT_REST_URL = "https://api.kraken.com"
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
                    last_time[symbol] = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
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


def backfill_url(rest_url: str, gap: Gap, last_time: float | None) -> str | None:
    """``GET /0/public/Trades`` since the last trade before the gap (Kraken pages by time,
    not by id; the normalizer keeps only the ids in the record's backfill range)."""
    if last_time is None:
        return None
    pair = gap.symbol.replace("/", "")
    query = urlencode({"pair": pair, "since": f"{last_time:.6f}", "count": 1000})
    return f"{rest_url.rstrip('/')}/0/public/Trades?{query}"


def backfill_ids(body: bytes) -> list[int]:
    """Trade ids in a Trades response: ``{"error":[],"result":{"<pair>":[[p,v,t,side,type,misc,id],..],"last":".."}}``."""
    msg = orjson.loads(body)
    if msg.get("error"):
        raise ValueError(f"Kraken error: {msg['error']}")
    return [int(row[6]) for key, rows in msg["result"].items() if key != "last" for row in rows]
