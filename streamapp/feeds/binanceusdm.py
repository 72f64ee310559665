"""Binance USDⓈ-M futures ``<symbol>@trade``: Binance's combined-stream protocol (:mod:`.binance`) on
futures hosts, with the futures history endpoint. Only the constants differ; the code is spot's.

A trade frame as received (combined stream; ``X`` is the order type, there is no ``M``)::

    {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161300010,"T":1723161300010,
     "s":"BTCUSDT","t":5266585686,"p":"61807.70","q":"0.002","X":"MARKET","m":true}}

Limits (futures docs): 1024 streams and 10 incoming messages/s per connection, a
connection lives 24 h at most, the server pings every 3 minutes. Gaps are backfilled from
``GET /fapi/v1/historicalTrades?symbol=&fromId=&limit=`` (at most 500 trades a page,
the last three months; body ``[{"id":..,"price":..,"qty":..,"quoteQty":..,"time":..,
"isBuyerMaker":..}]``, the spot shape without ``isBestMatch``). Binance lists that
endpoint as MARKET_DATA, i.e. it may ask for an API key (``X-MBX-APIKEY``), which the
feed does not send: without one, a failed backfill is counted, never fatal.
"""

from __future__ import annotations

from streamapp.exchanges import BINANCEUSDM, REST_URLS, WS_URLS
from streamapp.feeds.binance import (  # noqa: F401 - the protocol interface, shared with spot
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_SYMBOLS_PER_CONNECTION,
    MAX_CONNECTION_AGE_S,
    MAX_SYMBOLS_PER_CONNECTION,
    backfill_page,
    backfill_since,
    classify,
    history_url,
    normalize_symbol,
    probe_message,
    records,
    subscribe_messages,
)
from streamapp.feeds.gaps import Gap

EXCHANGE = BINANCEUSDM
DEFAULT_URL = WS_URLS[EXCHANGE]
DEFAULT_REST_URL = REST_URLS[EXCHANGE]
HISTORY_PATH = "/fapi/v1/historicalTrades"
BACKFILL_PAGE = 500  # the futures endpoint's maximum page


def backfill_url(rest_url: str, gap: Gap, since: str | None, limit: int = BACKFILL_PAGE) -> str:
    """``GET /fapi/v1/historicalTrades`` from the first missing id, at most ``limit`` (≤ 500) trades."""
    return history_url(rest_url, HISTORY_PATH, BACKFILL_PAGE, gap, limit)
