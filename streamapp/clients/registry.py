"""Schema registry access: register the ``Trade`` schema under a topic's value subject."""

from __future__ import annotations

import httpx
from schema_registry.client import AsyncSchemaRegistryClient, schema as sr_schema
from schema_registry.client.errors import ClientError

import records
from streamapp import topics
from streamapp.errors import StreamappError
from streamapp.settings import Settings


def _client_kwargs(settings: Settings) -> dict:
    kwargs: dict = {"url": settings.schema_registry_url}
    if settings.schema_registry_username and settings.schema_registry_password:
        kwargs["auth"] = (settings.schema_registry_username, settings.schema_registry_password.get_secret_value())
    return kwargs


async def register_trade_schema(settings: Settings, topic: str) -> int:
    """Register ``records/trade.avsc`` under ``<topic>-value``; return its schema id.

    Registering an identical schema again returns the same id; an incompatible
    one is refused by the registry (BACKWARD), which we report clearly.
    """
    client = AsyncSchemaRegistryClient(**_client_kwargs(settings))
    subject = topics.value_subject(topic)
    try:
        return await client.register(subject, sr_schema.AvroSchema(records.schema_json()))
    except ClientError as exc:
        raise StreamappError(
            f"registering the Trade schema under {subject!r} at {settings.schema_registry_url} failed: "
            f"{exc.message} (HTTP {exc.http_code}); if the registry refused it as incompatible, "
            "the schema change is not backward-compatible: add defaults to new fields"
        ) from exc
    except (OSError, httpx.HTTPError) as exc:
        raise StreamappError(
            f"cannot reach the schema registry at {settings.schema_registry_url}: {exc}; "
            "is it running (`streamapp stack status`)?"
        ) from exc

