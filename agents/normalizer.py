"""Normalizer agents: one per exchange, raw frames → Avro ``Trade`` records, or the DLQ.

Thin wiring: read a raw record, let :class:`streamapp.dispatch.Dispatcher`
decide, send what it returns inside the Kafka transaction that also commits
the record's offset (:mod:`streamapp.eos`, a fetched batch at a time), so a crash
loses and duplicates nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from streamapp import topics
from streamapp.app import app
from streamapp.clients.registry import register_trade_schema
from streamapp.codecs.avro import TradeAvroCodec
from streamapp.dispatch import Dispatcher, Outgoing
from streamapp.eos import process_batches
from streamapp.errors import StreamappError
from streamapp.exchanges import BINANCE, KRAKEN
from streamapp.normalize import binance, kraken
from streamapp.normalize.symbols import DEFAULT_BINANCE_SYMBOLS, DEFAULT_KRAKEN_SYMBOLS, SymbolMap
from streamapp.settings import get_settings

log = logging.getLogger(__name__)

REGISTRY_RETRY_MAX_S = 30.0
_RAW_BYTES = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


async def _dispatcher(exchange: str, parsers: ModuleType, symbols: SymbolMap) -> Dispatcher:
    """``parsers``: the exchange's module in :mod:`streamapp.normalize` (live frames and REST backfills)."""
    settings = get_settings()
    schema_id = await _registered_schema_id(settings, topics.normalized(exchange))
    log.info("%s: Trade schema id %d under %s", exchange, schema_id, topics.value_subject(topics.normalized(exchange)))
    return Dispatcher(exchange, parsers.normalize, symbols, TradeAvroCodec(schema_id),
                      backfill=parsers.normalize_backfill, max_skew_s=settings.clock_skew_s)


async def _registered_schema_id(settings: Any, topic: str) -> int:
    """Register the schema, waiting out a registry that is down (the agent must not die of it)."""
    delay = 1.0
    while True:
        try:
            return await register_trade_schema(settings, topic)
        except StreamappError as exc:
            log.error("%s; retrying in %.0f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, REGISTRY_RETRY_MAX_S)


def _listed(csv: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in csv.split(",") if item.strip())


async def _run(stream: Any, dispatcher: Dispatcher) -> None:
    # Whole fetched batches, not events: Faust's per-event cost is several times the
    # normalization's; the output joins each source partition's transaction (streamapp.eos).
    def transform(records: Sequence[Any]) -> list[Outgoing]:
        dispatch = dispatcher.dispatch
        return [out for r in records for out in dispatch(r.value, r.key, r.headers, r.partition, r.offset)]

    await process_batches(stream, transform)


@app.agent(app.topic(topics.raw(BINANCE), **_RAW_BYTES), name="normalize-binance")
async def normalize_binance(stream: Any) -> None:
    extra = _listed(get_settings().binance_symbols)
    await _run(stream, await _dispatcher(BINANCE, binance, SymbolMap.binance(DEFAULT_BINANCE_SYMBOLS + extra)))


@app.agent(app.topic(topics.raw(KRAKEN), **_RAW_BYTES), name="normalize-kraken")
async def normalize_kraken(stream: Any) -> None:
    extra = _listed(get_settings().kraken_symbols)
    await _run(stream, await _dispatcher(KRAKEN, kraken, SymbolMap.kraken(DEFAULT_KRAKEN_SYMBOLS + extra)))
