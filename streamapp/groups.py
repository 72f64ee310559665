"""Consumer group ids: declared here once."""

from streamapp.exchanges import EXCHANGES

# The Faust app id is its consumer group.
NORMALIZER = "streamapp-normalizer"


def clickhouse(exchange: str) -> str:
    """The group of the ClickHouse Kafka-engine table reading ``exchange``'s normalized topic."""
    return f"clickhouse-{exchange}"


CLICKHOUSE_GROUPS: tuple[str, ...] = tuple(clickhouse(e) for e in EXCHANGES)
