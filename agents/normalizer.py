"""Normalizer agents: one per exchange, raw frames → Avro ``Trade`` records, or the DLQ.

Thin wiring: read a raw record, let :class:`streamapp.dispatch.Dispatcher`
decide, send what it returns inside the Kafka transaction that also commits
the record's offset (:mod:`streamapp.eos`), so a crash loses and duplicates nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from types import ModuleType
from typing import Any

from streamapp import topics
from streamapp.app import app
from streamapp.backoff import backoff_delay
from streamapp.clients import listings
from streamapp.clients.registry import register_trade_schema
from streamapp.codecs.avro import TradeAvroCodec
from streamapp.dispatch import Dispatcher
from streamapp.eos import guard_commits, send_in_source_transactions
from streamapp.errors import StreamappError
from streamapp.exchanges import BINANCE, BINANCEUSDM, KRAKEN
from streamapp.normalize import binance, kraken
from streamapp.settings import get_settings

log = logging.getLogger(__name__)

BATCH_MAX = 1000  # raw records per batch at most
BATCH_WITHIN_S = 0.005  # how long a batch waits to fill: the latency it may add
REGISTRY_RETRY_MAX_S = 30.0
_RAW_BYTES = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


async def _dispatcher(exchange: str, parsers: ModuleType) -> Dispatcher:
    """``parsers``: the exchange's module in :mod:`streamapp.normalize` (live frames and REST backfills).
    Symbols: what the exchange lists (:mod:`streamapp.clients.listings`), as the feeds check theirs."""
    settings = get_settings()
    loaded = await listings.load(settings, exchange)
    log.info("%s: accepting %d symbols, from %s", exchange, len(loaded.symbols.table), loaded.describe())
    symbols = loaded.symbols
    schema_id = await _registered_schema_id(settings, topics.normalized(exchange))
    log.info("%s: Trade schema id %d under %s", exchange, schema_id, topics.value_subject(topics.normalized(exchange)))
    return Dispatcher(exchange, parsers.normalize, symbols, TradeAvroCodec(schema_id),
                      backfill=parsers.normalize_backfill, max_skew_s=settings.clock_skew_s)


async def _registered_schema_id(settings: Any, topic: str) -> int:
    """Register the schema, waiting out a registry that is down (the agent must not die of it)."""
    for attempt in itertools.count():
        try:
            return await register_trade_schema(settings, topic)
        except StreamappError as exc:
            delay = backoff_delay(attempt, 1.0, REGISTRY_RETRY_MAX_S, jitter=False)
            log.error("%s; retrying in %.0f s", exc, delay)
            await asyncio.sleep(delay)


def _timestamp_ms(message: Any) -> int | None:
    """The Kafka record's timestamp (Faust gives float seconds of a millisecond value)."""
    return None if message.timestamp is None else round(message.timestamp * 1000)


async def _run(stream: Any, dispatcher: Dispatcher) -> None:
    # Batches amortize Faust's per-event cost; `take_events` acks a batch only after
    # this loop body returns, with no await in between (see streamapp.eos).
    guard_commits(app.consumer)  # before the first batch: no commit may start unguarded
    refresher = asyncio.ensure_future(listings.keep_fresh(get_settings(), dispatcher))
    try:
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            await send_in_source_transactions(app, [
                (e, dispatcher.dispatch(e.message.value, e.message.key, e.message.headers, e.message.partition,
                                        e.message.offset, _timestamp_ms(e.message)))
                for e in events
            ])
    finally:
        refresher.cancel()


@app.agent(app.topic(topics.raw(BINANCE), **_RAW_BYTES), name="normalize-binance")
async def normalize_binance(stream: Any) -> None:
    await _run(stream, await _dispatcher(BINANCE, binance))


@app.agent(app.topic(topics.raw(BINANCEUSDM), **_RAW_BYTES), name="normalize-binanceusdm")
async def normalize_binanceusdm(stream: Any) -> None:
    # USDⓈ-M futures frames are Binance frames (with X, without M): the same parsers, their own exchange id.
    await _run(stream, await _dispatcher(BINANCEUSDM, binance))


@app.agent(app.topic(topics.raw(KRAKEN), **_RAW_BYTES), name="normalize-kraken")
async def normalize_kraken(stream: Any) -> None:
    await _run(stream, await _dispatcher(KRAKEN, kraken))
