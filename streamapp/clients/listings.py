"""What each exchange lists, from its own REST metadata: the symbols feeds may subscribe to and the
normalizer accepts, so the two always agree.

Fetched once at start (bounded by ``symbols_fetch_timeout_s``), cached under
``$STREAMAPP_HOME/listings/`` with its fetch time, and, when the exchange cannot be
reached, taken from that cache if it is younger than ``symbols_cache_max_age_s``, else
from the bundled lists in :mod:`streamapp.normalize.symbols`, saying so in the log.
Either way, ``STREAMAPP_<EXCHANGE>_SYMBOLS`` adds symbols on top. Lookups afterwards are
one dict lookup (:class:`~streamapp.normalize.symbols.SymbolMap`); nothing here runs per
message: the normalizer refreshes its lists in the background (:func:`keep_fresh`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

import aiohttp
import orjson

from streamapp.errors import StreamappError
from streamapp.exchanges import BINANCE, BINANCEUSDM, KRAKEN
from streamapp.normalize.symbols import (
    DEFAULT_BINANCE_SYMBOLS, DEFAULT_BINANCEUSDM_SYMBOLS, DEFAULT_KRAKEN_SYMBOLS, Listing, SymbolMap,
    parse_binance_exchange_info, parse_kraken_asset_pairs,
)
from streamapp.settings import Settings

log = logging.getLogger(__name__)

EXCHANGE = "exchange"  # where a listing came from: the exchange itself,
CACHE = "cache"        # our cache of an earlier answer,
BUNDLED = "bundled"    # or the lists bundled with streamapp.
MIN_REFRESH_S = 60.0   # the normalizer asks again after an unknown symbol at most this often


@dataclass(frozen=True)
class Source:
    """One exchange's metadata endpoint (path under its REST base URL), parser, and fallback."""

    path: str
    parse: Callable[[bytes], Listing]
    by_rule: Callable[[Iterable[str]], SymbolMap]  # a map from symbols alone, by the exchange's naming rule
    bundled: tuple[str, ...]  # the fallback list
    example: str  # a symbol as the exchange writes it, for error messages


# Keyed by exchange id (ccxt's). `showPermissionSets=false` keeps Binance spot's answer small
# (each symbol's permission sets are most of its several megabytes).
SOURCES: dict[str, Source] = {
    BINANCE: Source("/api/v3/exchangeInfo?showPermissionSets=false",
                    partial(parse_binance_exchange_info, exchange=BINANCE),
                    partial(SymbolMap.binance, exchange=BINANCE), DEFAULT_BINANCE_SYMBOLS, "BTCUSDT"),
    BINANCEUSDM: Source("/fapi/v1/exchangeInfo", partial(parse_binance_exchange_info, exchange=BINANCEUSDM),
                        partial(SymbolMap.binance, exchange=BINANCEUSDM), DEFAULT_BINANCEUSDM_SYMBOLS, "BTCUSDT"),
    KRAKEN: Source("/0/public/AssetPairs", parse_kraken_asset_pairs, SymbolMap.kraken, DEFAULT_KRAKEN_SYMBOLS,
                     "BTC/USD"),
}

Fetch = Callable[[str, float], Awaitable[bytes]]


@dataclass(frozen=True)
class Loaded:
    """A listing and where it came from (``exchange``, ``cache`` or ``bundled``)."""

    exchange: str
    listing: Listing
    origin: str
    url: str
    age_s: float  # how old the exchange's answer is (0 when just fetched; bundled: -1)

    @property
    def symbols(self) -> SymbolMap:
        return self.listing.symbols

    def describe(self) -> str:
        if self.origin == EXCHANGE:
            return f"the exchange's list from {self.url}"
        if self.origin == CACHE:
            return f"the cached list from {self.url}, {self.age_s / 3600:.1f} h old"
        return "the bundled list (the exchange was unreachable)"


def source(exchange: str) -> Source:
    try:
        return SOURCES[exchange]
    except KeyError:
        raise StreamappError(f"no symbol metadata source for exchange {exchange!r}: "
                             f"known are {', '.join(SOURCES)}") from None


def metadata_url(settings: Settings, exchange: str, rest_url: str | None = None) -> str:
    """The metadata URL: ``rest_url`` or the setting ``<exchange>_rest_url``, plus the endpoint's path."""
    base = rest_url or settings.feed_rest_url(exchange)
    return base.rstrip("/") + source(exchange).path


def extra_symbols(settings: Settings, exchange: str) -> tuple[str, ...]:
    """``STREAMAPP_<EXCHANGE>_SYMBOLS``: comma-separated symbols accepted besides the listing."""
    csv = getattr(settings, f"{exchange}_symbols", "") or ""
    return tuple(item.strip() for item in csv.split(",") if item.strip())


def cache_path(settings: Settings, exchange: str, url: str) -> Path:
    """One file per exchange and URL, so a simulator's list never stands in for the real exchange's."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return Path(settings.home) / "listings" / f"{exchange}-{digest}.json"


async def http_fetch(url: str, timeout_s: float) -> bytes:
    """GET ``url``; the whole exchange (DNS, connect, body) bounded by ``timeout_s``."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
        async with http.get(url) as response:
            body = await response.read()
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}: {body[:200]!r}")
            return body


async def load(settings: Settings, exchange: str, *, rest_url: str | None = None, fetch: Fetch = http_fetch,
               now: Callable[[], float] = time.time) -> Loaded:
    """The exchange's listing: fetched now, else cached, else bundled (logged), plus the extras setting."""
    src = source(exchange)
    url = metadata_url(settings, exchange, rest_url)
    path = cache_path(settings, exchange, url)
    extra = extra_symbols(settings, exchange)
    try:
        body = await fetch(url, settings.symbols_fetch_timeout_s)
        listing = src.parse(body)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:  # no usable answer: fall back
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        loaded = _from_cache(settings, exchange, src, url, path, now(), reason)
    else:
        _write_cache(path, exchange, url, now(), body)
        loaded = Loaded(exchange, listing, EXCHANGE, url, 0.0)
        log.info("%s: %d symbols listed by the exchange (%s)", exchange, len(listing.symbols.table), url)
    if loaded.listing.skipped:
        log.info("%s: %d metadata entries left out, e.g. %s", exchange, len(loaded.listing.skipped),
                 loaded.listing.skipped[0])
    return _with_extra(loaded, extra)


def _from_cache(settings: Settings, exchange: str, src: Source, url: str, path: Path, at: float,
                reason: str) -> Loaded:
    max_age = settings.symbols_cache_max_age_s
    try:
        cached = orjson.loads(path.read_bytes())
        age = at - float(cached["fetched_at"])
        if age <= max_age:
            loaded = Loaded(exchange, src.parse(cached["body"].encode()), CACHE, url, age)
            log.warning("%s: exchange metadata unreachable at %s (%s); using the list cached %.1f h ago in %s "
                        "(%d symbols)", exchange, url, reason, age / 3600, path, len(loaded.symbols.table))
            return loaded
        why_not = f"the cached list is {age / 3600:.1f} h old, more than symbols_cache_max_age_s"
    except FileNotFoundError:
        why_not = "nothing cached yet"
    except (OSError, ValueError, KeyError, TypeError) as exc:  # unreadable cache: same as none
        why_not = f"the cache {path} is unreadable ({exc})"
    listing = Listing(src.by_rule(src.bundled))
    log.warning("%s: exchange metadata unreachable at %s (%s) and %s; using the BUNDLED symbol list "
                "(%d symbols) plus STREAMAPP_%s_SYMBOLS: symbols listed since are rejected as unknown_symbol",
                exchange, url, reason, why_not, len(listing.symbols.table), exchange.upper())
    return Loaded(exchange, listing, BUNDLED, url, -1.0)


def _write_cache(path: Path, exchange: str, url: str, at: float, body: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(orjson.dumps({"exchange": exchange, "url": url, "fetched_at": at,
                                      "body": body.decode("utf-8", "replace")}))
        tmp.replace(path)  # atomic: a concurrent reader sees the old file or the new one
    except OSError as exc:
        log.warning("%s: could not cache the symbol list in %s (%s); running without a cache", exchange, path, exc)


def _with_extra(loaded: Loaded, extra: tuple[str, ...]) -> Loaded:
    """The listing plus the extras setting's symbols (the exchange's own names win where both have one)."""
    if not extra:
        return loaded
    try:
        added = source(loaded.exchange).by_rule(extra).table
    except ValueError as exc:
        raise StreamappError(f"STREAMAPP_{loaded.exchange.upper()}_SYMBOLS: {exc}") from exc
    symbols = SymbolMap(loaded.exchange, {**added, **loaded.symbols.table})
    listing = Listing(symbols, loaded.listing.status, loaded.listing.skipped)
    return Loaded(loaded.exchange, listing, loaded.origin, loaded.url, loaded.age_s)


def require_listed(loaded: Loaded, symbols: Iterable[str]) -> None:
    """A feed may subscribe only to what the exchange lists: ``StreamappError`` naming the others."""
    wanted = list(symbols)
    unlisted = [s for s in wanted if s not in loaded.symbols]
    if unlisted:
        known = sorted(loaded.symbols.table)
        raise StreamappError(
            f"{loaded.exchange} does not list {', '.join(unlisted)} (checked against {loaded.describe()}, "
            f"{len(known)} symbols); pass symbols as the exchange writes them, e.g. {SOURCES[loaded.exchange].example}"
        )
    for symbol in wanted:
        status = loaded.listing.status.get(symbol)
        if status is not None and status not in ("TRADING", "online"):
            log.warning("%s: %s is listed with status %s: expect few or no trades", loaded.exchange, symbol, status)


class Refreshable(Protocol):
    """What :func:`keep_fresh` updates (a :class:`streamapp.dispatch.Dispatcher`)."""

    exchange: str
    unknown_symbols: int

    @property
    def symbols(self) -> SymbolMap: ...

    def use_symbols(self, symbols: SymbolMap) -> None: ...


async def keep_fresh(settings: Settings, target: Refreshable, *, min_interval_s: float = MIN_REFRESH_S,
                     tick_s: float = 1.0, fetch: Fetch = http_fetch,
                     clock: Callable[[], float] = time.monotonic) -> None:
    """Fetch ``target``'s listing again every ``symbols_refresh_s``, and soon after it rejected an
    unknown symbol (at most once per ``min_interval_s``), swapping a fetched list in. Runs until
    cancelled; a fallback (cache, bundled) never replaces what is in use."""
    last, seen = clock(), target.unknown_symbols
    while True:
        await asyncio.sleep(tick_s)
        since = clock() - last
        if since < settings.symbols_refresh_s and not (target.unknown_symbols > seen and since >= min_interval_s):
            continue
        last, seen = clock(), target.unknown_symbols
        loaded = await load(settings, target.exchange, fetch=fetch)
        if loaded.origin != EXCHANGE:
            continue
        added = sorted(set(loaded.symbols.table) - set(target.symbols.table))
        target.use_symbols(loaded.symbols)
        if added:
            log.info("%s: %d newly listed symbols accepted from now on: %s", target.exchange, len(added),
                     ", ".join(added[:20]) + (" ..." if len(added) > 20 else ""))
