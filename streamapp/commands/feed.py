"""``streamapp feed``: exchange trade feeds into the raw topics, and recordings of them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from streamapp.exchanges import EXCHANGES
from streamapp.feeds import binance, binanceusdm, kraken
from streamapp.settings import get_settings


def _symbols(_ctx, _param, value: tuple[str, ...]) -> list[str]:
    symbols = [s.strip() for v in value for s in v.split(",") if s.strip()]
    if not symbols:
        raise click.BadParameter("give at least one symbol, e.g. BTCUSDT (binance, binanceusdm) or BTC/USD (kraken)")
    return symbols


def _common(f):
    f = click.option("--exchange", type=click.Choice(EXCHANGES), required=True,
                     help="Which exchange: binance (spot), binanceusdm (USDⓈ-M futures) or kraken.")(f)
    f = click.option("--symbols", multiple=True, required=True, callback=_symbols,
                     help="Exchange symbols, comma-separated or repeated: BTCUSDT,ETHUSDT (binance, binanceusdm), "
                          "BTC/USD,ETH/USD (kraken v2 names).")(f)
    f = click.option("--url", help="WebSocket URL. Default: setting <exchange>_ws_url (STREAMAPP_BINANCE_WS_URL, "
                                   "STREAMAPP_BINANCEUSDM_WS_URL, STREAMAPP_KRAKEN_WS_URL), the real exchange unless "
                                   f"set ({binance.DEFAULT_URL}, {binanceusdm.DEFAULT_URL}, {kraken.DEFAULT_URL}); "
                                   "the simulator: ws://127.0.0.1:9200/stream (binance), "
                                   "ws://127.0.0.1:9200/fstream/stream (binanceusdm) or ws://127.0.0.1:9200/v2 "
                                   "(kraken).")(f)
    f = click.option("--symbols-per-connection", type=int,
                     help=f"Spread symbols over connections (default binance and binanceusdm "
                          f"{binance.DEFAULT_SYMBOLS_PER_CONNECTION}, kraken {kraken.DEFAULT_SYMBOLS_PER_CONNECTION}).")(f)
    f = click.option("--idle-timeout", type=float, help="Reconnect after this many seconds without any frame "
                                                        "(a probe is sent at half of it).")(f)
    return f


@click.group()
def feed() -> None:
    """Exchange trade feeds: publish to market.crypto.trades.<exchange>.raw, or record to files."""


@feed.command()
@_common
@click.option("--topic", help="Publish here instead of market.crypto.trades.<exchange>.raw (tests, trials).")
@click.option("--rest-url", "--backfill-url", "rest_url",
              help="REST base URL of the exchange: its symbol list (checked at start: a symbol it does not "
                   "list is refused) and gap backfill. Default: setting <exchange>_rest_url "
                   "(STREAMAPP_BINANCE_REST_URL, STREAMAPP_BINANCEUSDM_REST_URL, STREAMAPP_KRAKEN_REST_URL), "
                   f"the real exchange unless set ({binance.DEFAULT_REST_URL}, {binanceusdm.DEFAULT_REST_URL}, "
                   f"{kraken.DEFAULT_REST_URL}); the simulator: http://127.0.0.1:9200. "
                   "--backfill-url is the old name.")
@click.option("--backfill/--no-backfill", default=None,
              help="Backfill gaps from REST, or only detect and count them (offline runs). "
                   "Default: setting feed_backfill (STREAMAPP_FEED_BACKFILL, true unless set).")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Start from the last trade id per symbol on the raw topic, so trades missed while the feed was "
                   "down are a gap (backfilled). --no-resume: start without memory (replaying a capture again).")
@click.option("--create-topic/--no-create-topic", default=True, show_default=True,
              help="Create the raw topic first if it is missing.")
@click.option("--max-connection-age", type=float,
              help="Rotate connections after this many seconds, with an overlap (binance, binanceusdm default 23 h).")
@click.option("--metrics-port", type=int, help="Serve /metrics here (default: setting feed_metrics_port; 0: off).")
def run(exchange, symbols, url, symbols_per_connection, idle_timeout, topic, rest_url, backfill,
        resume, create_topic, max_connection_age, metrics_port) -> None:
    """Publish every trade frame, byte for byte, to the exchange's raw topic until Ctrl-C.

    The producer buffers up to setting feed_max_buffered_records (STREAMAPP_FEED_MAX_BUFFERED_RECORDS)
    records for up to feed_message_timeout_s (STREAMAPP_FEED_MESSAGE_TIMEOUT_S) while the broker is away.

    Example, against the simulator:

        streamapp feed run --exchange binance --symbols BTCUSDT --url ws://127.0.0.1:9200/stream
        --rest-url http://127.0.0.1:9200

    Symbols are checked at start against what the exchange lists (its REST metadata, cached under
    $STREAMAPP_HOME/listings; the bundled list when it is unreachable): one it does not list is refused.
    """
    from prometheus_client import start_http_server

    from streamapp import topics
    from streamapp.clients.kafka import ensure_topics
    from streamapp.feeds.handler import FeedHandler, FeedOptions, run_until_signalled

    settings = get_settings()
    backfill = settings.feed_backfill if backfill is None else backfill
    rest_url = rest_url or settings.feed_rest_url(exchange)
    options = FeedOptions(
        exchange=exchange, symbols=symbols, url=url or settings.feed_ws_url(exchange), topic=topic,
        rest_url=rest_url if backfill else None, listing_url=rest_url,
        symbols_per_connection=symbols_per_connection, idle_timeout_s=idle_timeout,
        max_connection_age_s=-1.0 if max_connection_age is None else max_connection_age, resume=resume)
    handler = FeedHandler(settings, options)
    if create_topic:
        ensure_topics(settings, [topic or topics.raw(exchange)])
    port = settings.feed_metrics_port if metrics_port is None else metrics_port
    if port:
        start_http_server(port, addr=settings.metrics_host)
        click.echo(f"metrics on http://{settings.metrics_host}:{port}/metrics", err=True)
    run_until_signalled(handler.run)


@feed.command()
@_common
@click.option("--out", type=click.Path(path_type=Path), default=Path("recordings"), show_default=True,
              help="Directory for the capture files.")
@click.option("--rotate-mb", type=float, default=64.0, show_default=True, help="Start a new file after this many MB (uncompressed).")
@click.option("--rotate-minutes", type=float, default=60.0, show_default=True, help="Start a new file after this long.")
def record(exchange, symbols, url, symbols_per_connection, idle_timeout, out, rotate_mb, rotate_minutes) -> None:
    """Record every frame a live connection receives (control frames too) into gzip JSON-lines
    capture files that `streamapp exchange serve --capture` replays. Stop with Ctrl-C."""
    from streamapp.feeds.handler import FeedOptions, run_until_signalled
    from streamapp.feeds.record import record as record_feed

    url = url or get_settings().feed_ws_url(exchange)
    options = FeedOptions(exchange=exchange, symbols=symbols, url=url, symbols_per_connection=symbols_per_connection,
                          idle_timeout_s=idle_timeout)

    async def go(stop: asyncio.Event) -> None:
        writer = await record_feed(options, out, stop, rotate_bytes=int(rotate_mb * (1 << 20)),
                                   rotate_s=rotate_minutes * 60)
        click.echo(f"recorded {writer.frames} frames into {len(writer.files)} file(s) in {out}", err=True)

    run_until_signalled(go)
