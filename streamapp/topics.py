"""Topic names: declared here once and imported everywhere (streamapp/sql/ and compose are checked against it)."""

from streamapp.exchanges import EXCHANGES

DLQ = "market.crypto.trades.dlq"
SCHEMAS = "_schemas"  # the schema registry's compacted store


def raw(exchange: str) -> str:
    """Exchange frames, byte for byte as received. Key: exchange symbol."""
    return f"market.crypto.trades.{exchange}.raw"


def normalized(exchange: str) -> str:
    """Avro ``Trade`` records in Confluent wire format. Key: canonical symbol."""
    return f"market.crypto.trades.{exchange}.normalized"


def value_subject(topic: str) -> str:
    """The schema-registry subject of a topic's values (TopicNameStrategy)."""
    return f"{topic}-value"


RAW_TOPICS: tuple[str, ...] = tuple(raw(e) for e in EXCHANGES)
NORMALIZED_TOPICS: tuple[str, ...] = tuple(normalized(e) for e in EXCHANGES)
PIPELINE_TOPICS: tuple[str, ...] = RAW_TOPICS + NORMALIZED_TOPICS + (DLQ,)
