"""Binance spot ``<symbol>@trade`` on combined streams: subscriptions, frame kinds, keys, ids.

A trade frame as received (combined stream), published byte for byte::

    {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161300031,"s":"BTCUSDT",
     "t":3735684134,"p":"61828.00000000","q":"0.01057000","T":1723161300030,"m":false,"M":true}}

Control frames: ``{"result":null,"id":1}`` (request ack), ``{"error":{...},"id":1}``,
``{"e":"serverShutdown","E":...}`` (possibly wrapped in ``{"stream":..,"data":..}``).
Limits (docs, 2024): 1024 streams and 5 incoming messages/s per connection, a
connection lives 24 h at most, the server pings every 20 s and expects a pong.

USDⓈ-M futures speak the same protocol on other hosts: :mod:`.binanceusdm` reuses
everything here but its constants and history endpoint.
"""

from __future__ import annotations

from urllib.parse import urlencode

import orjson

from streamapp.exchanges import BINANCE, REST_URLS, WS_URLS
from streamapp.feeds.frames import Frame, Kind
from streamapp.feeds.gaps import Gap

EXCHANGE = BINANCE
DEFAULT_URL = WS_URLS[EXCHANGE]
DEFAULT_REST_URL = REST_URLS[EXCHANGE]
MAX_SYMBOLS_PER_CONNECTION = 1024
DEFAULT_SYMBOLS_PER_CONNECTION = 200
# Binance closes every connection after 24 h; rotate well before, with an overlap.
MAX_CONNECTION_AGE_S = 23 * 3600.0
# Trades can be quiet for minutes on small symbols: probe with LIST_SUBSCRIPTIONS first.
DEFAULT_IDLE_TIMEOUT_S = 30.0
SUBSCRIBE_BATCH = 200  # streams per SUBSCRIBE message
HISTORY_PATH = "/api/v3/historicalTrades"  # trades by id: ?symbol=&fromId=&limit=
BACKFILL_PAGE = 1000  # the endpoint's maximum page (historicalTrades' largest limit)


def normalize_symbol(symbol: str) -> str:
    """Exchange symbol as Binance keys its trades: ``btcusdt`` -> ``BTCUSDT``."""
    return symbol.strip().upper()


def stream_name(symbol: str) -> str:
    return f"{symbol.lower()}@trade"


def subscribe_messages(symbols: list[str], first_req_id: int) -> list[str]:
    """One SUBSCRIBE per batch of streams (stays under 5 incoming messages/s for ≤1000 streams)."""
    streams = [stream_name(s) for s in symbols]
    return [
        orjson.dumps({"method": "SUBSCRIBE", "params": streams[i:i + SUBSCRIBE_BATCH],
                      "id": first_req_id + n}).decode()
        for n, i in enumerate(range(0, len(streams), SUBSCRIBE_BATCH))
    ]


def probe_message(req_id: int) -> str:
    """An application-level request whose answer proves the connection is alive."""
    return orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": req_id}).decode()


def classify(text: str | bytes) -> Frame:
    """Kind, key and trade ids of one frame. Never raises."""
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return Frame(Kind.MALFORMED, detail=f"not JSON: {exc}")
    if not isinstance(msg, dict):
        return Frame(Kind.UNKNOWN, detail=f"JSON {type(msg).__name__}, expected an object")
    data = msg.get("data") if "stream" in msg else msg
    if isinstance(data, dict) and "e" in data:
        event = data["e"]
        if event == "trade":
            symbol, trade_id = data.get("s"), data.get("t")
            if not isinstance(symbol, str) or not isinstance(trade_id, int) or isinstance(trade_id, bool):
                return Frame(Kind.MALFORMED, detail="trade event without string 's' and integer 't'")
            return Frame(Kind.TRADE, key=symbol, ids={symbol: [trade_id]})
        if event == "serverShutdown":
            return Frame(Kind.SHUTDOWN, detail="serverShutdown")
        return Frame(Kind.UNKNOWN, detail=f"event {event!r}")
    if "id" in msg and "result" in msg:
        return Frame(Kind.ACK, detail=f"id {msg['id']}")
    if "error" in msg:
        return Frame(Kind.ERROR, detail=orjson.dumps(msg["error"]).decode())
    return Frame(Kind.UNKNOWN, detail="object without 'e', 'result' or 'error'")


def records(data: bytes, frame: Frame) -> list[tuple[str, bytes, dict[str, list[int]]]]:
    """The raw records of one trade frame: (key, value, ids by symbol). One trade, one symbol: the frame."""
    return [(frame.key or "", data, frame.ids)]


def backfill_since(last_time: float | None) -> str | None:
    """Binance pages by trade id, not by time: no cursor needed."""
    return None


def history_url(rest_url: str, path: str, page: int, gap: Gap, limit: int) -> str:
    """``GET <path>?symbol=&fromId=&limit=``: the gap's trades from its first missing id, at most
    ``limit`` and never more than the endpoint's ``page``."""
    query = urlencode({"symbol": gap.symbol, "fromId": gap.first, "limit": min(gap.size, limit, page)})
    return f"{rest_url.rstrip('/')}{path}?{query}"


def backfill_url(rest_url: str, gap: Gap, since: str | None, limit: int = BACKFILL_PAGE) -> str:
    """``GET /api/v3/historicalTrades`` from the first missing id, at most ``limit`` (≤ 1000) trades."""
    return history_url(rest_url, HISTORY_PATH, BACKFILL_PAGE, gap, limit)


def backfill_page(body: bytes) -> tuple[list[tuple[int, float | None]], str | None]:
    """(trade id, time s) of a historicalTrades response (spot and futures) ``[{"id":..,"price":..,"time":ms,..},..]``,
    and no cursor (the next page starts from an id). Raises ``ValueError`` on another shape."""
    rows = orjson.loads(body)
    if not isinstance(rows, list):
        raise ValueError(f"historicalTrades answered {body[:200]!r}, not an array of trades")
    return [(int(t["id"]), t["time"] / 1000 if isinstance(t.get("time"), int) else None) for t in rows], None
