"""Confluent wire format for ``Trade``: magic byte 0, 4-byte big-endian schema id, Avro body.

This is the hot path of the normalizer agents, so all schema work happens once
in ``__init__``: the schema is parsed once, decimals are converted to Avro's
unscaled two's-complement bytes by exact integer arithmetic (no float, no
rounding: a value with more fractional digits than the schema's scale is a
``CodecError``), and one ``BytesIO`` is reused. An instance is not thread-safe
(one per agent/event loop).

The schema id comes from the schema registry at start-up (the caller registers
``records.schema_str()`` under ``<topic>-value`` and passes the id in).
"""

from __future__ import annotations

import io
import struct
from decimal import Decimal
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from records import (
    PRICE_PRECISION,
    PRICE_SCALE,
    QUANTITY_PRECISION,
    QUANTITY_SCALE,
    Trade,
    parsed_schema,
    schema_json,
    to_unscaled,
)
from streamapp.errors import StreamappError

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")  # magic byte, schema id
HEADER_SIZE = _HEADER.size  # 5
MAX_SCHEMA_ID = 2**31 - 1  # ids are Java ints in the registry
MAX_INT = 2**31 - 1  # Avro int
MAX_LONG = 2**63 - 1  # Avro long


class CodecError(StreamappError):
    """A value could not be encoded or decoded; the message names the value and why."""


def _reader_schema() -> dict[str, Any]:
    """The Trade schema with the timestamp logical types removed, for decoding.

    Binary-identical to the registered schema (a timestamp-micros is a long),
    but fastavro then hands back the integer microseconds our record holds
    instead of building ``datetime`` objects we would convert back.
    """
    raw = schema_json()
    fields = []
    for field in raw["fields"]:
        ftype = field["type"]
        if isinstance(ftype, dict) and ftype.get("logicalType") in ("timestamp-micros", "timestamp-millis"):
            field = {**field, "type": ftype["type"]}
        fields.append(field)
    # A distinct name keeps fastavro's named-type registry from mixing the two.
    return {**raw, "name": "TradeWire", "fields": fields}


def _decimal_bytes(value: Decimal, precision: int, scale: int, field: str) -> bytes:
    if not isinstance(value, Decimal):
        raise CodecError(f"Trade.{field} is {value!r} ({type(value).__name__}); expected a decimal.Decimal")
    try:
        unscaled = to_unscaled(value, precision, scale)
    except ValueError as exc:
        raise CodecError(f"Trade.{field} cannot be encoded exactly: {exc}") from exc
    return unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)


class TradeAvroCodec:
    """Encode ``Trade`` to / decode it from Confluent wire-format Avro, under one schema id."""

    __slots__ = ("_buffer", "_header", "_reader_schema", "_schema", "schema_id")

    def __init__(self, schema_id: int) -> None:
        if isinstance(schema_id, bool) or not isinstance(schema_id, int):
            raise CodecError(
                f"schema_id {schema_id!r} ({type(schema_id).__name__}) is not an int; "
                "pass the id the schema registry returned for the Trade subject"
            )
        if not 0 <= schema_id <= MAX_SCHEMA_ID:
            raise CodecError(f"schema_id {schema_id} is outside 0..{MAX_SCHEMA_ID}; registry ids are non-negative Java ints")
        self.schema_id = schema_id
        self._header = _HEADER.pack(MAGIC_BYTE, schema_id)
        self._schema = parsed_schema()
        self._reader_schema = parse_schema(_reader_schema())
        self._buffer = io.BytesIO()

    def encode(self, trade: Trade) -> bytes:
        """Magic byte, schema id, Avro body of ``trade``."""
        if not isinstance(trade, Trade):
            raise CodecError(f"cannot encode {type(trade).__name__}; expected records.Trade")
        # fastavro writes any Python int as a varint without range checks; a partition
        # beyond Avro's int range would be unreadable elsewhere, so check the lineage ints.
        partition, offset = trade.raw_partition, trade.raw_offset
        if type(partition) is not int or not 0 <= partition <= MAX_INT:
            raise CodecError(f"Trade.raw_partition is {partition!r}; expected an int in 0..{MAX_INT}")
        if type(offset) is not int or not 0 <= offset <= MAX_LONG:
            raise CodecError(f"Trade.raw_offset is {offset!r}; expected an int in 0..{MAX_LONG}")
        datum = {
            "exchange": trade.exchange,
            "symbol": trade.symbol,
            "exchange_symbol": trade.exchange_symbol,
            "trade_id": trade.trade_id,
            "trade_seq": trade.trade_seq,
            "price": _decimal_bytes(trade.price, PRICE_PRECISION, PRICE_SCALE, "price"),
            "quantity": _decimal_bytes(trade.quantity, QUANTITY_PRECISION, QUANTITY_SCALE, "quantity"),
            "side": trade.side,
            "trade_time": trade.trade_time,
            "event_time": trade.event_time,
            "receive_time": trade.receive_time,
            "raw_partition": partition,
            "raw_offset": offset,
        }
        buffer = self._buffer
        buffer.seek(0)
        buffer.truncate()
        buffer.write(self._header)
        try:
            schemaless_writer(buffer, self._schema, datum)
        except (TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise CodecError(f"cannot encode trade {trade.exchange}:{trade.symbol}:{trade.trade_id}: {exc}") from exc
        return buffer.getvalue()

    def decode(self, data: bytes) -> Trade:
        """The ``Trade`` in a wire-format message written under this codec's schema id."""
        if len(data) < HEADER_SIZE:
            raise CodecError(f"message of {len(data)} bytes is shorter than the {HEADER_SIZE}-byte wire-format header")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC_BYTE:
            raise CodecError(f"magic byte is {magic}, expected {MAGIC_BYTE}: not Confluent wire-format Avro")
        if schema_id != self.schema_id:
            raise CodecError(
                f"message has schema id {schema_id}, this codec reads {self.schema_id}; "
                "decode it with a codec for that id (or re-register the schema)"
            )
        body = io.BytesIO(data)
        body.seek(HEADER_SIZE)
        try:
            record = schemaless_reader(body, self._reader_schema, None)
        except (EOFError, ValueError, TypeError, IndexError, UnicodeDecodeError, OverflowError, MemoryError) as exc:
            raise CodecError(f"cannot decode Avro Trade body ({len(data)} bytes): {exc!r}") from exc
        if body.tell() != len(data):
            raise CodecError(f"{len(data) - body.tell()} trailing bytes after the Avro Trade body")
        try:
            return Trade(**record)
        except TypeError as exc:  # pragma: no cover - the schema and the dataclass agree (tested)
            raise CodecError(f"decoded record does not fit Trade: {exc}") from exc

