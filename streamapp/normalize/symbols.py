"""Symbol maps: exchange symbol as sent → canonical ``BASE/QUOTE``.

A map is an allow-list: a symbol not in it is rejected (``unknown_symbol``),
never guessed. Maps are data, built from a list of exchange symbols with the
exchange's naming rule, and can be overridden entry by entry:

* Binance concatenates base and quote (``BTCUSDT``); the canonical form splits
  off the longest known quote suffix → ``BTC/USDT``.
* Kraken v1 writes ``XBT/USD`` and ``XDG/USD``; v2 writes ``BTC/USD`` and
  ``DOGE/USD``. Both forms map to the canonical ``BTC/USD``, ``DOGE/USD``.

Build the runtime maps from configuration with :meth:`SymbolMap.binance` /
:meth:`SymbolMap.kraken`; the defaults below cover the common pairs and the
recorded test data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

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

_ASSET = re.compile(r"[A-Z0-9]{1,20}")


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

    def with_overrides(self, overrides: Mapping[str, str]) -> SymbolMap:
        """A copy with entries added or replaced (explicit entries beat the naming rule)."""
        return SymbolMap(self.exchange, {**self.table, **overrides})

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
