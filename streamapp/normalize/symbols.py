"""Symbol maps: exchange symbol as sent → canonical ``BASE/QUOTE``.

A map is an allow-list: a symbol not in it is rejected (``unknown_symbol``),
never guessed. Maps are data, built from a list of exchange symbols with the
exchange's naming rule, and can be overridden entry by entry:

* Binance concatenates base and quote (``BTCUSDT``); the canonical form splits
  off the longest known quote suffix → ``BTC/USDT``.
* Kraken v1 writes ``XBT/USD`` and ``XDG/USD``; v2 writes ``BTC/USD`` and
  ``DOGE/USD``. Both forms map to the canonical ``BTC/USD``, ``DOGE/USD``.

At run time the maps come from the exchange's own metadata (what it lists),
parsed here by :func:`parse_binance_exchange_info` and
:func:`parse_kraken_asset_pairs` and fetched by :mod:`streamapp.clients.listings`;
the bundled lists below (the common pairs and the recorded test data) are the
fallback when the exchange cannot be reached.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import orjson

from streamapp.exchanges import BINANCE, BINANCEUSDM, KRAKEN

# Quote assets Binance uses, longest first so FDUSD wins over USD and USDT over USD.
BINANCE_QUOTES: tuple[str, ...] = tuple(
    sorted(
        ("USDT", "USDC", "FDUSD", "TUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "DAI", "USD", "JPY"),
        key=len,
        reverse=True,
    )
)

# Kraken's legacy asset codes → the names everyone else uses.
KRAKEN_ASSET_ALIASES: Mapping[str, str] = MappingProxyType({"XBT": "BTC", "XDG": "DOGE"})

DEFAULT_BINANCE_SYMBOLS: tuple[str, ...] = (
    "BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "LTCUSDT",
    "BTCUSDC", "ETHUSDC", "BTCFDUSD", "ETHBTC", "BTCEUR",
    "FTMUSDT", "SXPBTC", "XMRBTC", "BADGERBTC",
)  # fmt: skip

# USDⓈ-M perpetuals: the same naming rule (BTCUSDT -> BTC/USDT), another market.
DEFAULT_BINANCEUSDM_SYMBOLS: tuple[str, ...] = (
    "BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "LTCUSDT", "BTCUSDC", "ETHUSDC",
)  # fmt: skip

DEFAULT_KRAKEN_SYMBOLS: tuple[str, ...] = (
    "XBT/USD", "XBT/EUR", "XBT/USDT", "XBT/CHF", "ETH/USD", "ETH/EUR", "ETH/XBT", "ETH/CHF",
    "SOL/USD", "XDG/USD", "XRP/USD", "ADA/USD", "ADA/XBT", "USDT/USD", "USDC/USD", "USDC/GBP",
    "ALGO/XBT", "DASH/EUR", "XMR/USD", "SC/EUR", "KSM/XBT", "GRT/ETH", "OCEAN/XBT", "OMG/USD",
    "WAVES/EUR", "WAVES/ETH", "FIL/XBT", "ICX/USD", "KAVA/USD", "LSK/USD", "AUD/USD", "MATIC/USD",
    "MATIC/GBP",
)  # fmt: skip

# Asset codes: upper-case letters and digits (1000SATS), and Kraken's staked assets' dot (ETH2.S).
_ASSET = re.compile(r"[A-Z0-9][A-Z0-9.]{0,19}")


def binance_canonical(exchange_symbol: str, quotes: Iterable[str] = BINANCE_QUOTES) -> str:
    """``BTCUSDT`` → ``BTC/USDT`` by the longest known quote suffix; ``ValueError`` if none fits."""
    for quote in sorted(quotes, key=len, reverse=True):
        base = exchange_symbol[: -len(quote)]
        if exchange_symbol.endswith(quote) and _ASSET.fullmatch(base):
            return f"{base}/{quote}"
    raise ValueError(f"Binance symbol {exchange_symbol!r} does not end in a known quote asset {tuple(quotes)}")


def kraken_canonical(exchange_symbol: str, aliases: Mapping[str, str] = KRAKEN_ASSET_ALIASES) -> str:
    """``XBT/USD`` → ``BTC/USD``, ``XDG/EUR`` → ``DOGE/EUR``; ``ValueError`` unless ``BASE/QUOTE``."""
    base, sep, quote = exchange_symbol.partition("/")
    if not sep or not _ASSET.fullmatch(base) or not _ASSET.fullmatch(quote):
        raise ValueError(f"Kraken symbol {exchange_symbol!r} is not BASE/QUOTE (e.g. XBT/USD)")
    return f"{aliases.get(base, base)}/{aliases.get(quote, quote)}"


@dataclass(frozen=True)
class SymbolMap:
    """The allow-list of one exchange's symbols: exchange symbol → canonical symbol."""

    exchange: str
    table: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Frozen, read-only copy: lookups are one dict.get on the hot path.
        object.__setattr__(self, "table", MappingProxyType(dict(self.table)))

    def canonical(self, exchange_symbol: str) -> str | None:
        """The canonical symbol, or ``None`` if the symbol is not in the map."""
        return self.table.get(exchange_symbol)

    def __contains__(self, exchange_symbol: object) -> bool:
        return exchange_symbol in self.table

    @classmethod
    def binance(
        cls,
        symbols: Iterable[str] = DEFAULT_BINANCE_SYMBOLS,
        *,
        quotes: Iterable[str] = BINANCE_QUOTES,
        overrides: Mapping[str, str] | None = None,
        exchange: str = BINANCE,
    ) -> SymbolMap:
        """Binance symbols (``BTCUSDT``) with canonical names by the quote-suffix rule; ``exchange``
        ``binanceusdm`` for USDⓈ-M futures, which name their symbols the same way."""
        if exchange not in (BINANCE, BINANCEUSDM):
            raise ValueError(f"SymbolMap.binance is for {BINANCE} or {BINANCEUSDM}, not {exchange!r}")
        quotes = tuple(quotes)
        table = {s: binance_canonical(s, quotes) for s in symbols}
        return cls(exchange, {**table, **(overrides or {})})

    @classmethod
    def kraken(
        cls,
        symbols: Iterable[str] = DEFAULT_KRAKEN_SYMBOLS,
        *,
        aliases: Mapping[str, str] = KRAKEN_ASSET_ALIASES,
        overrides: Mapping[str, str] | None = None,
    ) -> SymbolMap:
        """Kraken pairs in either spelling; both the v1 (``XBT/USD``) and v2 (``BTC/USD``) forms are keys."""
        table: dict[str, str] = {}
        for s in symbols:
            canonical = kraken_canonical(s, aliases)
            table[s] = canonical
            table[canonical] = canonical
        return cls(KRAKEN, {**table, **(overrides or {})})


DEFAULT_BINANCE_MAP = SymbolMap.binance()
DEFAULT_KRAKEN_MAP = SymbolMap.kraken()


# --- the exchanges' own metadata -------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """What an exchange lists: its symbol map, each symbol's status as the exchange words it
    (``TRADING``, ``BREAK``, ``online``, ``cancel_only`` ...), and the entries left out, with why."""

    symbols: SymbolMap
    status: Mapping[str, str] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    def __contains__(self, exchange_symbol: object) -> bool:
        return exchange_symbol in self.symbols


def _json_object(body: bytes, what: str) -> dict:
    try:
        msg = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{what} is not JSON ({exc}): {body[:120]!r}") from exc
    if not isinstance(msg, dict):
        raise ValueError(f"{what} is a JSON {type(msg).__name__}, expected an object: {body[:120]!r}")
    return msg


def parse_binance_exchange_info(body: bytes, exchange: str = BINANCE) -> Listing:
    """Binance ``GET /api/v3/exchangeInfo`` (spot) or ``GET /fapi/v1/exchangeInfo`` (USDⓈ-M futures)::

        {"timezone":"UTC","serverTime":..,"rateLimits":[..],"symbols":[{"symbol":"ETHBTC",
         "status":"TRADING","baseAsset":"ETH","quoteAsset":"BTC",..},..]}

    Canonical symbol ``BASE/QUOTE`` from ``baseAsset``/``quoteAsset``. A futures delivery
    contract (``BTCUSDT_250328``) keeps its date, ``BTC/USDT-250328``, so it never shares
    a key with the perpetual. Every listed symbol counts, whatever its status (a halted
    symbol's trades are still real trades). ``ValueError`` if the body is not of this shape.
    """
    msg = _json_object(body, f"{exchange} exchangeInfo")
    entries = msg.get("symbols")
    if not isinstance(entries, list):
        raise ValueError(f"{exchange} exchangeInfo has no 'symbols' list (keys: {sorted(msg)[:8]}); "
                         f"is the REST URL the exchange's?")
    table: dict[str, str] = {}
    status: dict[str, str] = {}
    skipped: list[str] = []
    for entry in entries:
        fields = [entry.get(k) if isinstance(entry, dict) else None
                  for k in ("symbol", "baseAsset", "quoteAsset", "status")]
        symbol, base, quote, state = fields
        if not all(isinstance(f, str) for f in fields) or not (_ASSET.fullmatch(base) and _ASSET.fullmatch(quote)):
            skipped.append(f"{str(entry)[:80]}: needs string symbol, baseAsset, quoteAsset and status")
            continue
        _, sep, delivery = symbol.partition("_")
        table[symbol] = f"{base}/{quote}-{delivery}" if sep else f"{base}/{quote}"
        status[symbol] = state
    return Listing(SymbolMap(exchange, table), MappingProxyType(status), tuple(skipped))


def parse_kraken_asset_pairs(body: bytes, aliases: Mapping[str, str] = KRAKEN_ASSET_ALIASES) -> Listing:
    """Kraken ``GET /0/public/AssetPairs``::

        {"error":[],"result":{"XXBTZUSD":{"altname":"XBTUSD","wsname":"XBT/USD","base":"XXBT",
         "quote":"ZUSD",..,"status":"online"},..}}

    Keyed by ``wsname`` (``XBT/USD``) and by its WebSocket v2 spelling (``BTC/USD``), both
    mapped to the canonical ``BTC/USD`` (Kraken's ``XBT`` is ``BTC``, ``XDG`` is ``DOGE``),
    as :meth:`SymbolMap.kraken` does. Pairs without a ``wsname`` (not on WebSocket) are left
    out. ``ValueError`` if Kraken answered an error or the body is not of this shape.
    """
    msg = _json_object(body, "kraken AssetPairs")
    if msg.get("error"):
        raise ValueError(f"kraken AssetPairs answered an error: {msg['error']}")
    result = msg.get("result")
    if not isinstance(result, dict):
        raise ValueError(f"kraken AssetPairs has no 'result' object (keys: {sorted(msg)[:8]}); "
                         "is the REST URL the exchange's?")
    table: dict[str, str] = {}
    status: dict[str, str] = {}
    skipped: list[str] = []
    for key, pair in result.items():
        wsname = pair.get("wsname") if isinstance(pair, dict) else None
        if not isinstance(wsname, str):
            skipped.append(f"{key}: no wsname (not traded over WebSocket)")
            continue
        try:
            canonical = kraken_canonical(wsname, aliases)
        except ValueError as exc:
            skipped.append(f"{key}: {exc}")
            continue
        state = pair.get("status", "online")
        for name in (wsname, canonical):
            table[name] = canonical
            status[name] = state if isinstance(state, str) else "online"
    return Listing(SymbolMap(KRAKEN, table), MappingProxyType(status), tuple(skipped))
