"""Normalizer agents: one per exchange, raw frames → Avro ``Trade`` records, or the DLQ.

Thin wiring: read a raw record, let :class:`streamapp.dispatch.Dispatcher`
decide, send what it returns inside the Kafka transaction that also commits
the record's offset (:mod:`streamapp.eos`, a fetched batch at a time), so a crash
loses and duplicates nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from streamapp import topics
from streamapp.app import app
from streamapp.backoff import backoff_delay
from streamapp.clients import listings
from streamapp.clients.registry import register_trade_schema
from streamapp.codecs.avro import TradeAvroCodec
from streamapp.dispatch import Dispatcher, Outgoing
from streamapp.eos import process_batches
from streamapp.errors import StreamappError
from streamapp.exchanges import BINANCE, BINANCEUSDM, KRAKEN
from streamapp.normalize import binance, kraken
from streamapp.settings import get_settings

log = logging.getLogger(__name__)

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


def _timestamp_ms(record: Any) -> int | None:
    """The Kafka record's timestamp in ms (aiokafka's ``ConsumerRecord``; none: ``None`` or negative)."""
    timestamp = record.timestamp
    return None if timestamp is None or timestamp < 0 else timestamp


async def _run(stream: Any, dispatcher: Dispatcher) -> None:
    # Whole fetched batches, not events: Faust's per-event cost is several times the
    # normalization's; the output joins each source partition's transaction (streamapp.eos).
    def transform(records: Sequence[Any]) -> list[Outgoing]:
        dispatch = dispatcher.dispatch
        return [out for r in records
                for out in dispatch(r.value, r.key, r.headers, r.partition, r.offset, _timestamp_ms(r))]

    refresher = asyncio.ensure_future(listings.keep_fresh(get_settings(), dispatcher))
    try:
        await process_batches(stream, transform)
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
