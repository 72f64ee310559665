"""ClickHouse table names: declared here once (streamapp/sql/ is checked against it)."""

from streamapp.exchanges import EXCHANGES

MIGRATIONS = "schema_migrations"
SILVER = "silver_trades"
KAFKA_ERRORS = "kafka_errors"
# Every trade Silver ever received, kept as long as Gold: what the Bronze -> Silver views dedup against.
TRADE_IDENTITIES = "trade_identities"

INTERVALS: tuple[str, ...] = ("1m", "5m", "15m", "30m", "1h", "1d")
# Gold stores the states of this interval only; every other interval rolls them up when read (0008).
STORED_INTERVAL = "1m"


def kafka(exchange: str) -> str:
    return f"kafka_trades_{exchange}"


def bronze(exchange: str) -> str:
    return f"bronze_trades_{exchange}"


def gold(interval: str) -> str:
    """Candle states: the AggregatingMergeTree for :data:`STORED_INTERVAL`, a view rolling it up for the rest."""
    return f"gold_ohlcv_{interval}"


def candles(interval: str) -> str:
    """Plain view finalizing :func:`gold` states into OHLCV rows."""
    return f"gold_ohlcv_{interval}_final"


KAFKA_TABLES = tuple(kafka(e) for e in EXCHANGES)
BRONZE_TABLES = tuple(bronze(e) for e in EXCHANGES)
GOLD_TABLES = tuple(gold(i) for i in INTERVALS)
GOLD_STORED = gold(STORED_INTERVAL)
CANDLE_VIEWS = tuple(candles(i) for i in INTERVALS)
