"""The feed handler: an exchange's frames, classified and de-duplicated, published to its raw topic.

Wiring only: protocol module (what frames mean) + :class:`~streamapp.feeds.transport.FeedRunner`
(connections) + :class:`~streamapp.feeds.gaps.GapTracker` + :class:`~streamapp.feeds.producer.Publisher`
+ optional :class:`~streamapp.feeds.backfill.Backfiller`.

The gap tracker stands for what was published. At start it resumes from the raw topic's
tail (:mod:`streamapp.feeds.resume`), so trades missed while the feed was down are a gap.
A frame the producer refuses is taken back from the tracker, so its ids open the next gap
(or, if no frame of that symbol comes within a second, are a gap by themselves); a record
whose delivery fails later (reported from the producer's thread) becomes a gap of
its own ids, merged with its neighbours, on the event loop. All gaps go to the backfiller.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from dataclasses import dataclass, field
from types import ModuleType

from streamapp import headers, topics
from streamapp.clients import listings
from streamapp.errors import StreamappError
from streamapp.feeds import binance, binanceusdm, kraken, metrics, resume
from streamapp.feeds.backfill import Backfiller
from streamapp.feeds.frames import Frame, Kind
from streamapp.feeds.gaps import Gap, GapTracker
from streamapp.feeds.producer import Publisher
from streamapp.feeds.transport import FeedConfig, FeedRunner
from streamapp.settings import Settings

log = logging.getLogger(__name__)

PROTOCOLS: dict[str, ModuleType] = {p.EXCHANGE: p for p in (binance, binanceusdm, kraken)}


def protocol_for(exchange: str) -> ModuleType:
    try:
        return PROTOCOLS[exchange]
    except KeyError:
        raise StreamappError(f"unknown exchange {exchange!r}: use one of {', '.join(PROTOCOLS)}") from None


@dataclass
class FeedOptions:
    """Everything about a feed run that is not a setting (CLI options, test knobs)."""

    exchange: str
    symbols: list[str]
    url: str | None = None                  # WebSocket URL; default: the exchange's
    topic: str | None = None                # default: topics.raw(exchange)
    rest_url: str | None = None             # backfill from here; None: no backfill
    listing_url: str | None = None          # check symbols against the exchange's listing (REST base URL); None: no check
    symbols_per_connection: int | None = None
    idle_timeout_s: float | None = None
    max_connection_age_s: float | None = -1.0  # -1: the exchange's default cut-off margin
    overlap_s: float = 5.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    ping_interval_s: float = 20.0
    max_buffered: int | None = None         # default: setting feed_max_buffered_records
    message_timeout_s: float | None = None  # default: setting feed_message_timeout_s
    flush_timeout_s: float = 30.0
    producer_config: dict[str, object] = field(default_factory=dict)
    resume: bool = True                     # start from the last trade ids on the raw topic
    backfill_page_size: int | None = None   # trades per REST page; default: the exchange's largest


class RawTopicSink:
    """Publishes trade frames (new ids only) with receive-time and connection headers; finds gaps,
    in what was received and in what was not published."""

    def __init__(self, exchange: str, topic: str, publisher: Publisher, backfiller: Backfiller | None,
                 protocol: ModuleType | None = None):
        self.exchange = exchange
        self.topic = topic
        self.publisher = publisher
        self.backfiller = backfiller
        self.protocol = protocol or protocol_for(exchange)
        self.tracker = GapTracker()
        self.gaps: list[Gap] = []
        self.duplicates = 0
        self._last_time: dict[str, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failed_lock = threading.Lock()
        self._failed: list[tuple[str, int, int, float | None]] = []  # from the producer's thread
        # Refused ids no later frame has shown as a gap yet: backfilled after refused_grace_s anyway.
        self._refused: dict[str, tuple[int, int, float | None]] = {}
        self._refused_timer: asyncio.TimerHandle | None = None
        self.refused_grace_s = 1.0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop that failed deliveries are handed to."""
        self._loop = loop

    def resume(self, symbol: str, last_id: int, last_time: float | None) -> None:
        self.tracker.resume(symbol, last_id)
        if last_time is not None:
            self._last_time.setdefault(symbol, last_time)
        log.info("%s: %s resumes after trade id %d, the last on %s", self.exchange, symbol, last_id, self.topic)

    def handle(self, conn_id: str, receive_us: int, received: float, data: bytes, frame: Frame) -> None:
        if frame.kind is not Kind.TRADE:
            return
        for key, value, ids in self.protocol.records(data, frame):
            self._publish_trades(conn_id, receive_us, received, key, value, ids, frame.last_time)

    def _publish_trades(self, conn_id: str, receive_us: int, received: float, key: str, value: bytes,
                        ids_by_symbol: dict[str, list[int]], last_time: dict[str, float]) -> None:
        fresh: list[tuple[str, int, int, float | None]] = []  # symbol, first and last new id, time before them
        for symbol, ids in ids_by_symbol.items():
            seen = self.tracker.observe(symbol, ids)
            if seen.new:  # its gap (or the ids themselves) covers what was refused before
                self._refused.pop(symbol, None)
            for gap in seen.gaps:
                self._gap(gap, f"before a frame on {conn_id}", self._last_time.get(symbol))
            if seen.new:
                fresh.append((symbol, seen.first_new, seen.last_new, self._last_time.get(symbol)))
        if not fresh:
            self.duplicates += 1
            metrics.DUPLICATES.labels(self.exchange).inc()
            return
        accepted = self.publisher.publish(self.topic, key, value, [
            (headers.RECEIVE_TIME_US, str(receive_us).encode()),
            (headers.CONNECTION_ID, conn_id.encode()),
            (headers.SOURCE, headers.SOURCE_WS),
        ], "trade", received, on_failed=lambda _err: self._delivery_failed(fresh))
        if not accepted:  # not published: its ids are the start of the next gap
            for symbol, first, last, at in fresh:
                self.tracker.unpublished(symbol, first)
                if symbol in last_time:  # the first frame of a symbol: its time is the best reference there is
                    self._last_time.setdefault(symbol, last_time[symbol])
                pending = self._refused.get(symbol)
                self._refused[symbol] = (first, last, at) if pending is None else (pending[0], last, pending[2])
            if self._refused_timer is None and self._loop is not None:
                self._refused_timer = self._loop.call_later(self.refused_grace_s, self._flush_refused)
            return
        for symbol, *_ in fresh:
            if symbol in last_time:
                self._last_time[symbol] = last_time[symbol]

    def _gap(self, gap: Gap, where: str, last_time: float | None) -> None:
        self.gaps.append(gap)
        metrics.GAPS.labels(self.exchange).inc()
        metrics.GAP_TRADES.labels(self.exchange).inc(gap.size)
        log.warning("%s: GAP in %s trade ids: %d-%d (%d missing) %s", self.exchange, gap.symbol, gap.first,
                    gap.last, gap.size, where)
        if self.backfiller is not None:
            self.backfiller.submit(gap, last_time)

    def _delivery_failed(self, ranges: list[tuple[str, int, int, float | None]]) -> None:
        """Producer thread: a published record was given up. Its ids become a gap, on the loop."""
        with self._failed_lock:
            self._failed.extend(ranges)
        try:
            if self._loop is None:
                raise RuntimeError("no event loop bound")
            self._loop.call_soon_threadsafe(self._flush_failed)
        except RuntimeError:  # no loop any more (shutdown): a restart finds the gap
            log.error("%s: trades %s not delivered and not backfilled in this run", self.exchange,
                      ", ".join(f"{s} {a}-{b}" for s, a, b, _ in ranges))

    def _flush_refused(self) -> None:
        """Refused ids that no frame has shown as a gap since (the symbol went quiet): backfill them now."""
        self._refused_timer = None
        refused, self._refused = self._refused, {}
        for symbol, (first, last, at) in refused.items():
            self.tracker.resume(symbol, last)  # being backfilled: the next frame continues after them
            self._gap(Gap(symbol, first, last), "refused by the producer (no frame since)", at)

    def _flush_failed(self) -> None:
        """Merge the failed ranges reported so far per symbol (adjacent ones too) and backfill them."""
        with self._failed_lock:
            failed, self._failed = self._failed, []
        merged: list[list] = []
        for symbol, first, last, at in sorted(failed, key=lambda r: (r[0], r[1])):
            if merged and merged[-1][0] == symbol and first <= merged[-1][2] + 1:
                top = merged[-1]
                top[2] = max(top[2], last)
                top[3] = at if top[3] is None else (top[3] if at is None else min(top[3], at))
            else:
                merged.append([symbol, first, last, at])
        for symbol, first, last, at in merged:
            self._gap(Gap(symbol, first, last), "not delivered (delivery failed)", at)

    def publish_backfill(self, key: str, body: bytes, hdrs: list[tuple[str, bytes]], received: float, gap: Gap,
                         since: str | None) -> bool:
        return self.publisher.publish(self.topic, key, body, hdrs, "backfill", received,
                                      on_failed=lambda _err: self._backfill_failed(gap, since))

    def _backfill_failed(self, gap: Gap, since: str | None) -> None:
        """Producer thread: a backfill page was given up; fetch and publish its range again."""
        log.error("%s: backfill of %s %d-%d not delivered: backfilling it again", self.exchange, gap.symbol,
                  gap.first, gap.last)
        try:
            if self._loop is None or self.backfiller is None:
                raise RuntimeError("no event loop or backfiller")
            self._loop.call_soon_threadsafe(self.backfiller.resubmit, gap, since)
        except RuntimeError:
            log.error("%s: trades %s %d-%d not delivered and not backfilled in this run", self.exchange, gap.symbol,
                      gap.first, gap.last)

    def close(self) -> None:
        pass


def build_config(options: FeedOptions) -> tuple[ModuleType, FeedConfig]:
    """The protocol module and connection config for ``options``, checked against the exchange's limits."""
    p = protocol_for(options.exchange)
    symbols = [p.normalize_symbol(s) for s in options.symbols if s.strip()]
    if not symbols:
        raise StreamappError("no symbols given: pass --symbols, e.g. --symbols BTCUSDT,ETHUSDT")
    per_conn = options.symbols_per_connection or p.DEFAULT_SYMBOLS_PER_CONNECTION
    if not 1 <= per_conn <= p.MAX_SYMBOLS_PER_CONNECTION:
        raise StreamappError(f"symbols per connection {per_conn} is outside {options.exchange}'s limit "
                             f"1..{p.MAX_SYMBOLS_PER_CONNECTION}")
    age = p.MAX_CONNECTION_AGE_S if options.max_connection_age_s == -1.0 else options.max_connection_age_s
    config = FeedConfig(
        url=options.url or p.DEFAULT_URL, symbols=symbols, symbols_per_connection=per_conn,
        idle_timeout_s=options.idle_timeout_s or p.DEFAULT_IDLE_TIMEOUT_S,
        ping_interval_s=options.ping_interval_s, ping_timeout_s=options.ping_interval_s,
        backoff_base_s=options.backoff_base_s, backoff_cap_s=options.backoff_cap_s,
        max_connection_age_s=age, overlap_s=options.overlap_s)
    return p, config


class FeedHandler:
    """One exchange's feed, start to graceful stop. ``await handler.run(stop)``."""

    def __init__(self, settings: Settings, options: FeedOptions):
        self.settings = settings
        self.options = options
        self.protocol, self.config = build_config(options)
        self.topic = options.topic or topics.raw(options.exchange)
        self.publisher: Publisher | None = None
        self.sink: RawTopicSink | None = None
        self.backfiller: Backfiller | None = None
        self.runner: FeedRunner | None = None

    async def check_symbols(self) -> listings.Loaded:
        """Refuse, before connecting, a symbol the exchange does not list (the normalizer accepts
        exactly what the exchange lists, so a feed never publishes what it would reject)."""
        assert self.options.listing_url is not None
        loaded = await listings.load(self.settings, self.options.exchange, rest_url=self.options.listing_url)
        listings.require_listed(loaded, self.config.symbols)
        log.info("%s: %s listed (checked against %s)", self.options.exchange, ", ".join(self.config.symbols),
                 loaded.describe())
        return loaded

    async def run(self, stop: asyncio.Event) -> None:
        o = self.options
        s = self.settings
        if o.listing_url is not None:
            await self.check_symbols()
        self.publisher = Publisher(
            s, o.exchange, extra_config=o.producer_config,
            max_buffered=s.feed_max_buffered_records if o.max_buffered is None else o.max_buffered,
            message_timeout_s=s.feed_message_timeout_s if o.message_timeout_s is None else o.message_timeout_s)
        self.sink = RawTopicSink(o.exchange, self.topic, self.publisher, None, self.protocol)
        self.sink.bind(asyncio.get_running_loop())
        if o.resume:
            found = await asyncio.to_thread(resume.last_published, s, self.topic, self.protocol, self.config.symbols)
            for symbol, (last_id, last_time) in found.items():
                self.sink.resume(symbol, last_id, last_time)
            metrics.RESUMED.labels(o.exchange).set(len(found))
        if o.rest_url:
            self.backfiller = Backfiller(self.protocol, o.rest_url, self.sink.publish_backfill,
                                         page_size=o.backfill_page_size)
            self.sink.backfiller = self.backfiller
            self.backfiller.start()
        self.runner = FeedRunner(self.config, self.protocol, self.sink)
        log.info("%s feed -> topic %s (backfill: %s)", o.exchange, self.topic, o.rest_url or "off")
        try:
            await self.runner.run(stop)
        finally:
            if self.backfiller is not None:
                await self.backfiller.drain(10.0)
                await self.backfiller.close()
            remaining = await asyncio.to_thread(self.publisher.close, o.flush_timeout_s)
            log.info("%s feed stopped: %d delivered, %d dropped (buffer full), %d failed, %d unflushed",
                     o.exchange, self.publisher.delivered, self.publisher.dropped, self.publisher.failed, remaining)


def run_until_signalled(coro_factory) -> None:
    """Run ``coro_factory(stop)`` until SIGINT/SIGTERM sets ``stop`` (then it shuts down gracefully)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await coro_factory(stop)

    asyncio.run(main())
