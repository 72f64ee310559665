"""aiokafka's transactional producer waits out a broker restart while it looks up its coordinator.

aiokafka (0.14.0, the newest) retries a FindCoordinator request that the broker answers with
"not available", but not one whose connection closes under it: ``Sender._find_coordinator``
turns that ``KafkaConnectionError`` into a ``KafkaError``, the sender routine dies with
"Unexpected error during batch delivery", and Faust crashes the worker (upstream:
aio-libs/aiokafka#907). Seen in a CI run: the broker stopped while a worker's producer looked
up its transaction coordinator. Nothing was lost (nothing is acknowledged on a crash), but the
worker must ride out a broker restart. :func:`install` makes that case a retry: refresh the
metadata, wait the producer's retry backoff, look up again, for as long as the broker is away.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.producer.sender import Sender

log = logging.getLogger(__name__)

_aiokafka_find_coordinator = Sender._find_coordinator


async def _find_coordinator(self: Any, coordinator_type: Any, coordinator_key: Any) -> Any:
    while True:
        try:
            return await _aiokafka_find_coordinator(self, coordinator_type, coordinator_key)
        except KafkaError as exc:
            if not isinstance(exc.__cause__, KafkaConnectionError):
                raise
            log.warning("FindCoordinator for %s: %s; retrying once the metadata is refreshed", coordinator_key,
                        exc.__cause__)
            await self.client.force_metadata_update()
            await asyncio.sleep(self._retry_backoff)


def install() -> None:
    """Idempotent: every aiokafka producer of this process retries a coordinator lookup cut by a closed connection."""
    Sender._find_coordinator = _find_coordinator
