"""One raw record in, the records to publish out: normalized Avro trades, or one DLQ record.

This is the normalizer agents' whole decision, kept free of Faust and of I/O so
it can be tested and benchmarked on its own (the agents only read, call
:meth:`Dispatcher.dispatch`, and send).

The receive time is the ``streamapp.receive_time_us`` header our feeds set; a record
without it (written by kcat, Kafka Connect or another producer) takes its Kafka record
timestamp instead, counted in ``streamapp_normalizer_no_receive_header_total``.

The ``streamapp.source`` header picks the parser: WebSocket frames (``ws``, or no
header: records written before it existed) go to the exchange's ``normalize``;
REST backfill bodies (``rest-backfill``) to its ``normalize_backfill``, with the
record key as the symbol and the ``streamapp.backfill_range`` header
(``<first>-<last>``) as the trade ids to keep.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from prometheus_client import Counter, Histogram

from streamapp import headers as raw_headers
from streamapp import topics
from streamapp.codecs.avro import CodecError, TradeAvroCodec
from streamapp.normalize.result import BAD_VALUE, MISSING_FIELD, UNKNOWN_SYMBOL, Ignored, Rejection, Result
from streamapp.normalize.symbols import SymbolMap

log = logging.getLogger(__name__)

# DLQ record headers: why the record was rejected and where it came from.
ERROR_CODE = "streamapp.error_code"
ERROR_MESSAGE = "streamapp.error_message"
SOURCE_TOPIC = "streamapp.source_topic"
SOURCE_PARTITION = "streamapp.source_partition"
SOURCE_OFFSET = "streamapp.source_offset"

# Rejections found here rather than by the exchange parsers.
MISSING_HEADER = MISSING_FIELD
UNENCODABLE = BAD_VALUE

FRAMES = Counter("streamapp_normalizer_frames_total", "Raw records processed, by outcome.", ["exchange", "outcome"])
TRADES = Counter("streamapp_normalizer_trades_total", "Normalized trades published.", ["exchange"])
REJECTED = Counter("streamapp_normalizer_rejected_total", "Raw records sent to the DLQ, by reason.", ["exchange", "reason"])
IGNORED = Counter("streamapp_normalizer_ignored_total", "Control frames skipped, by kind.", ["exchange", "kind"])
NO_RECEIVE_HEADER = Counter(
    "streamapp_normalizer_no_receive_header_total",
    "Raw records without the streamapp.receive_time_us header (from other producers: kcat, Kafka Connect, ...), "
    "whose Kafka record timestamp was taken as the receive time.", ["exchange"],
)
NORMALIZE_SECONDS = Histogram(
    "streamapp_normalize_seconds", "Time to normalize and encode one raw record.", ["exchange"],
    buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05),
)
RECEIVE_TO_PUBLISH_SECONDS = Histogram(
    "streamapp_receive_to_publish_seconds", "Feed receive time to normalized record handed to the producer.",
    ["exchange"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60),
)

Normalize = Callable[..., Result]

_RANGE = re.compile(rb"([0-9]{1,19})-([0-9]{1,19})")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


class Dispatcher:
    """Normalizes one exchange's raw records and encodes the results for publishing."""

    def __init__(
        self, exchange: str, normalize: Normalize, symbols: SymbolMap, codec: TradeAvroCodec, *,
        backfill: Normalize, max_skew_s: float,
    ) -> None:
        """``normalize`` reads live frames, ``backfill`` REST backfill bodies (the exchange module's
        ``normalize`` and ``normalize_backfill``)."""
        if symbols.exchange != exchange:
            raise ValueError(f"symbol map is for {symbols.exchange!r}, not {exchange!r}")
        self.exchange = exchange
        self.source_topic = topics.raw(exchange)
        self.target_topic = topics.normalized(exchange)
        self._normalize = normalize
        self._backfill = backfill
        self._symbols = symbols
        self._codec = codec
        self._max_skew_us = int(max_skew_s * 1_000_000)
        self._trades = TRADES.labels(exchange)
        self._latency = NORMALIZE_SECONDS.labels(exchange)
        self._freshness = RECEIVE_TO_PUBLISH_SECONDS.labels(exchange)
        self._no_receive_header = NO_RECEIVE_HEADER.labels(exchange)
        self._outcomes = {o: FRAMES.labels(exchange, o) for o in ("trades", "ignored", "rejected")}
        self.unknown_symbols = 0  # unknown_symbol rejections so far: a hint that the symbol map is stale

    @property
    def symbols(self) -> SymbolMap:
        return self._symbols

    def use_symbols(self, symbols: SymbolMap) -> None:
        """Swap in a newer symbol map (one attribute write: the next record sees it)."""
        if symbols.exchange != self.exchange:
            raise ValueError(f"symbol map is for {symbols.exchange!r}, not {self.exchange!r}")
        self._symbols = symbols

    def dispatch(
        self, value: bytes, key: bytes | None, headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None,
        partition: int, offset: int, timestamp_ms: int | None = None,
    ) -> list[Outgoing]:
        """The records to publish for one raw record (none for a control frame). ``timestamp_ms``: the
        Kafka record's timestamp, the receive time of a record without our receive-time header."""
        started = time.perf_counter()
        now_us = time.time_ns() // 1000
        header_map = dict(headers or ())
        receive = header_map.get(raw_headers.RECEIVE_TIME_US)
        receive_us = -1
        if receive is not None and receive.isdigit():
            receive_us = int(receive)
        elif receive is None and timestamp_ms is not None and timestamp_ms >= 0:
            receive_us = timestamp_ms * 1000
            self._no_receive_header.inc()
        if receive_us < 0:
            result: Result = Rejection(
                MISSING_HEADER,
                f"raw record has no valid {raw_headers.RECEIVE_TIME_US} header ({receive!r})"
                + (" and no Kafka record timestamp" if receive is None else "")
                + "; `streamapp feed run` and `streamapp replay` set it, other producers' records need a timestamp",
            )
        else:
            result = self._route(value, key, header_map, receive_us, partition, offset, now_us)
        out: list[Outgoing]
        if isinstance(result, tuple):
            try:
                out = [
                    Outgoing(self.target_topic, trade.symbol.encode(), self._codec.encode(trade), [])
                    for trade in result
                ]
            except CodecError as exc:
                result = Rejection(UNENCODABLE, str(exc))
            else:
                self._outcomes["trades"].inc()
                self._trades.inc(len(out))
                if out:
                    self._freshness.observe(max(0, now_us - receive_us) / 1e6)
        if isinstance(result, Ignored):
            self._outcomes["ignored"].inc()
            IGNORED.labels(self.exchange, result.kind).inc()
            out = []
        elif isinstance(result, Rejection):
            self._outcomes["rejected"].inc()
            if result.code == UNKNOWN_SYMBOL:
                self.unknown_symbols += 1
            REJECTED.labels(self.exchange, result.code).inc()
            log.warning(
                "%s record %s[%d]@%d rejected to %s: %s: %s",
                self.exchange, self.source_topic, partition, offset, topics.DLQ, result.code, result.message,
            )
            # The raw record's own headers ride along, so a fixed frame can be re-driven as it was.
            out = [Outgoing(topics.DLQ, key, value, self.dlq_headers(result, partition, offset) + list(header_map.items()))]
        self._latency.observe(time.perf_counter() - started)
        return out

    def _route(
        self, value: bytes, key: bytes | None, header_map: Mapping[str, bytes], receive_us: int, partition: int,
        offset: int, now_us: int,
    ) -> Result:
        """Live frame or REST backfill body, by the ``streamapp.source`` header."""
        common = dict(receive_time_us=receive_us, raw_partition=partition, raw_offset=offset, symbols=self._symbols,
                      now_us=now_us, max_skew_us=self._max_skew_us)
        source = header_map.get(raw_headers.SOURCE, raw_headers.SOURCE_WS)
        if source == raw_headers.SOURCE_WS:
            return self._normalize(value, **common)
        if source != raw_headers.SOURCE_BACKFILL:
            return Rejection(
                BAD_VALUE, f"raw record's {raw_headers.SOURCE} header is {source!r}; expected "
                f"{raw_headers.SOURCE_WS!r} or {raw_headers.SOURCE_BACKFILL!r}",
            )
        span = header_map.get(raw_headers.BACKFILL_RANGE)
        if span is None:
            return Rejection(
                MISSING_HEADER, f"backfill record has no {raw_headers.BACKFILL_RANGE} header; the feed's backfiller "
                "sets it to the missing trade ids (<first>-<last>)",
            )
        match = _RANGE.fullmatch(span)
        if match is None or int(match[1]) > int(match[2]):
            return Rejection(
                BAD_VALUE, f"backfill record's {raw_headers.BACKFILL_RANGE} header is {span!r}; expected "
                "<first>-<last> trade ids with first <= last, e.g. b'1001-1200'",
            )
        symbol = key.decode("utf-8", "replace") if key else None
        return self._backfill(value, exchange_symbol=symbol, first_id=int(match[1]), last_id=int(match[2]), **common)

    def dlq_headers(self, rejection: Rejection, partition: int, offset: int) -> list[tuple[str, bytes]]:
        return [
            (ERROR_CODE, rejection.code.encode()),
            (ERROR_MESSAGE, rejection.message.encode()),
            (SOURCE_TOPIC, self.source_topic.encode()),
            (SOURCE_PARTITION, str(partition).encode()),
            (SOURCE_OFFSET, str(offset).encode()),
        ]
