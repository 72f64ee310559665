"""The simulator's exchange metadata, in the real formats: what it lists is the bundled symbol
lists plus every symbol its captures carry, so a feed may subscribe to a captured symbol and
the normalizer accepts it, as against the real exchange.

- ``GET /api/v3/exchangeInfo`` (Binance spot) and ``GET /fapi/v1/exchangeInfo`` (USDⓈ-M futures):
  ``{"timezone":"UTC","serverTime":..,"rateLimits":[..],"exchangeFilters":[],"symbols":[..]}``
- ``GET /0/public/AssetPairs`` (Kraken): ``{"error":[],"result":{"XBTUSD":{"altname":..,"wsname":"XBT/USD",..}}}``
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import orjson

from streamapp.normalize.symbols import (
    DEFAULT_BINANCE_SYMBOLS, DEFAULT_BINANCEUSDM_SYMBOLS, DEFAULT_KRAKEN_SYMBOLS, KRAKEN_ASSET_ALIASES,
    binance_canonical, kraken_canonical,
)
from streamapp.simulator.capture import Timeline

BUNDLED: Mapping[str, tuple[str, ...]] = {
    "binance": DEFAULT_BINANCE_SYMBOLS, "binanceusdm": DEFAULT_BINANCEUSDM_SYMBOLS, "kraken": DEFAULT_KRAKEN_SYMBOLS,
}
_KRAKEN_LEGACY = {canonical: legacy for legacy, canonical in KRAKEN_ASSET_ALIASES.items()}  # BTC -> XBT
_PERPETUAL_DELIVERY_MS = 4133404800000  # what Binance sends as a perpetual's delivery date (2100-12-25)


def captured_symbols(exchange: str, timeline: Timeline) -> set[str]:
    """Symbols as the exchange writes them in its trades: Binance ``s``, Kraken v2 ``symbol``."""
    if exchange == "kraken":
        return set(timeline.by_stream)
    return {trade["s"] for item in timeline.items for trade in item.trades if isinstance(trade.get("s"), str)}


def listed(timelines: Mapping[str, Timeline]) -> dict[str, list[str]]:
    """Per exchange id: the bundled list plus the captures' symbols (Kraken in its ``wsname`` spelling)."""
    out: dict[str, list[str]] = {}
    for exchange, bundled in BUNDLED.items():
        timeline = timelines.get(exchange)
        captured = captured_symbols(exchange, timeline) if timeline is not None else set()
        if exchange == "kraken":
            captured = {"/".join(_KRAKEN_LEGACY.get(a, a) for a in s.split("/")) for s in captured}
        out[exchange] = sorted(set(bundled) | captured)
    return out


def binance_exchange_info(symbols: Iterable[str], *, futures: bool = False) -> bytes:
    """A Binance ``exchangeInfo`` answer listing ``symbols`` (base and quote by the quote-suffix rule)."""
    entries = []
    for symbol in symbols:
        try:
            base, quote = binance_canonical(symbol).split("/")
        except ValueError:
            continue  # a symbol whose quote asset the rule does not know: not listed
        entry = {"symbol": symbol, "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8,
                 "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
                 "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"], "filters": []}
        if futures:
            entry.update({"pair": symbol, "contractType": "PERPETUAL", "deliveryDate": _PERPETUAL_DELIVERY_MS,
                          "onboardDate": 1569398400000, "marginAsset": quote, "underlyingType": "COIN",
                          "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"]})
        else:
            entry.update({"isSpotTradingAllowed": True, "isMarginTradingAllowed": False, "permissions": [],
                          "permissionSets": [["SPOT"]]})
        entries.append(entry)
    answer = {"timezone": "UTC", "serverTime": time.time_ns() // 1_000_000,
              "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                              "limit": 2400 if futures else 6000}],
              "exchangeFilters": [], "symbols": entries}
    if futures:
        answer["futuresType"] = "U_MARGINED"
    return orjson.dumps(answer)


def kraken_asset_pairs(wsnames: Iterable[str]) -> bytes:
    """A Kraken ``AssetPairs`` answer listing ``wsnames`` (``XBT/USD``), keyed by altname."""
    result = {}
    for wsname in wsnames:
        try:
            kraken_canonical(wsname)
        except ValueError:
            continue
        base, quote = wsname.split("/")
        altname = base + quote
        result[altname] = {"altname": altname, "wsname": wsname, "aclass_base": "currency", "base": base,
                           "aclass_quote": "currency", "quote": quote, "lot": "unit", "cost_decimals": 5,
                           "pair_decimals": 5, "lot_decimals": 8, "lot_multiplier": 1, "status": "online"}
    return orjson.dumps({"error": [], "result": result})
