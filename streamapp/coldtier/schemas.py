"""The cold tier's tables: names (declared here once), Iceberg schemas and partition specs.

Four layers, named like their ClickHouse counterparts (``streamapp/tables.py``) so one name
means one dataset in both tiers:

| layer  | Iceberg table                     | rows                                           | time column    |
|--------|-----------------------------------|------------------------------------------------|----------------|
| raw    | ``raw_trades``                    | the raw topics' records, bytes as received     | ``timestamp``  |
| bronze | ``bronze_trades_<exchange>``      | every delivered trade with its Kafka position  | ``trade_time`` |
| silver | ``silver_trades``                 | each trade once, every exchange                | ``trade_time`` |
| gold   | ``gold_ohlcv_<interval>``         | finalized candles (the ``_final`` views)       | ``window_start`` |

Every table is partitioned by day of its time column and by exchange. Prices and quantities are
``decimal(38, 18)``, times ``timestamptz`` (µs). Gold's quote volumes are ``Decimal(76, 36)`` in
ClickHouse; Iceberg's decimals stop at 38 digits, so they are stored as ``decimal(38, 18)`` and
the offload refuses (never rounds) a value that does not fit exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import (
    BinaryType,
    DecimalType,
    IntegerType,
    ListType,
    LongType,
    NestedField,
    StringType,
    StructType,
    TimestamptzType,
)

from streamapp import tables as hot
from streamapp.exchanges import EXCHANGES

CATALOG_NAME = "streamapp"
"""Fixed: other engines (Spark's JDBC catalog, ClickHouse) sharing the catalog find the tables under it."""

RAW = "raw_trades"
SILVER = hot.SILVER
OFFLOAD_LOG = "offload_log"
"""The watermark: one row per offloaded (layer, hour), appended after the hour's data commits."""

DECIMAL = DecimalType(38, 18)

RAW_LAYER, BRONZE_LAYER, SILVER_LAYER, GOLD_LAYER = "raw", "bronze", "silver", "gold"


def bronze(exchange: str) -> str:
    return hot.bronze(exchange)


def gold(interval: str) -> str:
    """Finalized candles (ClickHouse's ``gold_ohlcv_<interval>_final``), stored as plain values."""
    return hot.gold(interval)


@dataclass(frozen=True)
class ColdTable:
    name: str
    layer: str
    schema: Schema
    time_column: str
    exchange: str | None = None  # bronze: the one exchange the table holds
    interval: str | None = None  # gold

    @property
    def spec(self) -> PartitionSpec:
        """Day of the time column, then exchange: offloads replace hours, compaction rewrites (day, exchange)."""
        time_id = self.schema.find_field(self.time_column).field_id
        exchange_id = self.schema.find_field("exchange").field_id
        return PartitionSpec(
            PartitionField(time_id, 1000, DayTransform(), f"{self.time_column}_day"),
            PartitionField(exchange_id, 1001, IdentityTransform(), "exchange"),
        )


def _fields(*specs: tuple[str, object, bool]) -> Schema:
    return Schema(*(NestedField(i, name, kind, required=required) for i, (name, kind, required) in
                    enumerate(specs, start=1)))


_TRADE = (
    ("exchange", StringType(), True),
    ("symbol", StringType(), True),
    ("exchange_symbol", StringType(), True),
    ("trade_id", StringType(), True),
    ("trade_seq", LongType(), False),
    ("price", DECIMAL, True),
    ("quantity", DECIMAL, True),
    ("side", StringType(), True),
    ("trade_time", TimestamptzType(), True),
    ("event_time", TimestamptzType(), True),
    ("receive_time", TimestamptzType(), True),
)

SILVER_SCHEMA = _fields(*_TRADE, ("ingest_time", TimestamptzType(), True))

BRONZE_SCHEMA = _fields(
    *_TRADE,
    ("raw_partition", IntegerType(), True),
    ("raw_offset", LongType(), True),
    ("_topic", StringType(), True),
    ("_partition", LongType(), True),
    ("_offset", LongType(), True),
    ("_timestamp", TimestamptzType(), False),
    ("ingest_time", TimestamptzType(), True),
)

GOLD_SCHEMA = _fields(
    ("exchange", StringType(), True),
    ("symbol", StringType(), True),
    ("window_start", TimestamptzType(), True),
    ("open", DECIMAL, True),
    ("high", DECIMAL, True),
    ("low", DECIMAL, True),
    ("close", DECIMAL, True),
    ("volume", DECIMAL, True),
    ("quote_volume", DECIMAL, True),
    ("trade_count", LongType(), True),
    ("taker_buy_volume", DECIMAL, True),
    ("taker_buy_quote_volume", DECIMAL, True),
    ("first_trade_time", TimestamptzType(), True),
    ("last_trade_time", TimestamptzType(), True),
)

RAW_SCHEMA = Schema(
    NestedField(1, "exchange", StringType(), required=True),
    NestedField(2, "topic", StringType(), required=True),
    NestedField(3, "partition", IntegerType(), required=True),
    NestedField(4, "offset", LongType(), required=True),
    NestedField(5, "timestamp", TimestamptzType(), required=True),
    NestedField(6, "key", BinaryType(), required=False),
    NestedField(7, "value", BinaryType(), required=False),
    NestedField(8, "headers", ListType(9, StructType(
        NestedField(10, "key", StringType(), required=True),
        NestedField(11, "value", BinaryType(), required=False),
    ), element_required=True), required=True),
)

OFFLOAD_LOG_SCHEMA = Schema(
    NestedField(1, "layer", StringType(), required=True),
    NestedField(2, "hour", TimestamptzType(), required=True),
    NestedField(3, "rows", LongType(), required=True),
    NestedField(4, "max_ingest_time", TimestamptzType(), required=False),
    NestedField(5, "offloaded_at", TimestamptzType(), required=True),
)


def cold_tables() -> tuple[ColdTable, ...]:
    """Every data table of the cold tier (one bronze table per exchange in ``EXCHANGES``)."""
    return (
        ColdTable(RAW, RAW_LAYER, RAW_SCHEMA, "timestamp"),
        *(ColdTable(bronze(e), BRONZE_LAYER, BRONZE_SCHEMA, "trade_time", exchange=e) for e in EXCHANGES),
        ColdTable(SILVER, SILVER_LAYER, SILVER_SCHEMA, "trade_time"),
        *(ColdTable(gold(i), GOLD_LAYER, GOLD_SCHEMA, "window_start", interval=i) for i in hot.INTERVALS),
    )


def by_name(name: str) -> ColdTable:
    for table in cold_tables():
        if table.name == name:
            return table
    raise KeyError(name)
