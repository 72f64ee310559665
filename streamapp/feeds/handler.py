"""The feed handler: an exchange's frames, classified and de-duplicated, published to its raw topic.

Wiring only: protocol module (what frames mean) + :class:`~streamapp.feeds.transport.FeedRunner`
(connections) + :class:`~streamapp.feeds.gaps.GapTracker` + :class:`~streamapp.feeds.producer.Publisher`
+ optional :class:`~streamapp.feeds.backfill.Backfiller`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from types import ModuleType

from streamapp import topics
from streamapp.clients import listings
from streamapp.errors import StreamappError
from streamapp.feeds import binance, headers, kraken, metrics
from streamapp.feeds.backfill import Backfiller
from streamapp.feeds.frames import Frame, Kind
from streamapp.feeds.gaps import Gap, GapTracker
from streamapp.feeds.producer import Publisher
from streamapp.feeds.transport import FeedConfig, FeedRunner
from streamapp.settings import Settings

log = logging.getLogger(__name__)

PROTOCOLS: dict[str, ModuleType] = {binance.EXCHANGE: binance, kraken.EXCHANGE: kraken}


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


class RawTopicSink:
    """Publishes trade frames (new ids only) with receive-time and connection headers; finds gaps."""

    def __init__(self, exchange: str, topic: str, publisher: Publisher, backfiller: Backfiller | None):
        self.exchange = exchange
        self.topic = topic
        self.publisher = publisher
        self.backfiller = backfiller
        self.tracker = GapTracker()
        self.gaps: list[Gap] = []
        self.duplicates = 0
        self._last_time: dict[str, float] = {}

    def handle(self, conn_id: str, receive_us: int, received: float, data: bytes, frame: Frame) -> None:
        if frame.kind is not Kind.TRADE:
            return
        new = False
        for symbol, ids in frame.ids.items():
            seen = self.tracker.observe(symbol, ids)
            new = new or seen.new
            for gap in seen.gaps:
                self.gaps.append(gap)
                metrics.GAPS.labels(self.exchange).inc()
                metrics.GAP_TRADES.labels(self.exchange).inc(gap.size)
                log.warning("%s: GAP in %s trade ids: %d-%d (%d missing) before a frame on %s", self.exchange,
                            symbol, gap.first, gap.last, gap.size, conn_id)
                if self.backfiller is not None:
                    self.backfiller.submit(gap, self._last_time.get(symbol))
        self._last_time.update(frame.last_time)
        if not new:
            self.duplicates += 1
            metrics.DUPLICATES.labels(self.exchange).inc()
            return
        self.publisher.publish(self.topic, frame.key or "", data, [
            (headers.RECEIVE_TIME_US, str(receive_us).encode()),
            (headers.CONNECTION_ID, conn_id.encode()),
            (headers.SOURCE, headers.SOURCE_WS),
        ], "trade", received)

    def publish_backfill(self, key: str, body: bytes, hdrs: list[tuple[str, bytes]], received: float) -> None:
        self.publisher.publish(self.topic, key, body, hdrs, "backfill", received)

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
        self.sink = RawTopicSink(o.exchange, self.topic, self.publisher, None)
        if o.rest_url:
            self.backfiller = Backfiller(self.protocol, o.rest_url, self.sink.publish_backfill)
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
