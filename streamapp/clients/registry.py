"""Schema registry access: register the ``Trade`` schema under a topic's value subject."""

from __future__ import annotations

import httpx
from confluent_kafka.schema_registry import AsyncSchemaRegistryClient, Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError

import records
from streamapp import topics
from streamapp.errors import StreamappError
from streamapp.settings import Settings

try:  # confluent-kafka's client uses httpx2 where it is installed, else httpx (its common/_httpx_compat.py)
    import httpx2

    _HTTP_ERRORS: tuple[type[Exception], ...] = (OSError, httpx.HTTPError, httpx2.HTTPError)
except ImportError:
    _HTTP_ERRORS = (OSError, httpx.HTTPError)


async def register_trade_schema(settings: Settings, topic: str) -> int:
    """Register ``records/trade.avsc`` under ``<topic>-value``; return its schema id.

    Registering an identical schema again returns the same id; an incompatible
    one is refused by the registry (BACKWARD), which we report clearly. One try:
    the caller decides how to wait (the worker waits out a registry that is down).
    """
    subject = topics.value_subject(topic)
    # max.retries 0: the client's own retries would hide the failure from the caller's wait loop.
    async with AsyncSchemaRegistryClient({**settings.schema_registry_config(), "max.retries": 0}) as client:
        try:
            return await client.register_schema(subject, Schema(records.schema_str(), "AVRO"))
        except SchemaRegistryError as exc:
            raise StreamappError(
                f"registering the Trade schema under {subject!r} at {settings.schema_registry_url} failed: "
                f"{exc.error_message} (HTTP {exc.http_status_code}); if the registry refused it as incompatible, "
                "the schema change is not backward-compatible: add defaults to new fields"
            ) from exc
        except _HTTP_ERRORS as exc:
            raise StreamappError(
                f"cannot reach the schema registry at {settings.schema_registry_url}: {exc}; "
                "is it running (`streamapp stack status`)?"
            ) from exc
