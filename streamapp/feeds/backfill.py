"""Backfill of detected gaps from the exchange's REST API, off the receive path.

The REST response body is published to the raw topic as received, marked with
``streamapp.source: rest-backfill`` and the missing id range it was asked for, so the
normalizer can tell it from WebSocket frames and keep only the ids in that range.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import ModuleType
from typing import Callable

import aiohttp

from streamapp.feeds import headers, metrics
from streamapp.feeds.gaps import Gap

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, list[tuple[str, bytes]], float], None]


class Backfiller:
    def __init__(self, protocol: ModuleType, rest_url: str, publish: Publish, *, attempts: int = 3,
                 timeout_s: float = 10.0) -> None:
        self.protocol = protocol
        self.exchange = protocol.EXCHANGE
        self.rest_url = rest_url
        self._publish = publish
        self._attempts = attempts
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._queue: asyncio.Queue[tuple[Gap, float | None]] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None
        self.backfilled = 0
        self.failed: list[Gap] = []

    def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        self._task = asyncio.create_task(self._work(), name=f"{self.exchange}-backfill")

    def submit(self, gap: Gap, last_time: float | None) -> None:
        self._queue.put_nowait((gap, last_time))

    async def drain(self, timeout_s: float) -> None:
        """Let queued backfills finish (on shutdown), up to ``timeout_s``."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout_s)
        except asyncio.TimeoutError:
            log.warning("%s: %d backfill(s) unfinished at shutdown", self.exchange, self._queue.qsize())

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session:
            await self._session.close()

    async def _work(self) -> None:
        while True:
            gap, last_time = await self._queue.get()
            try:
                await self._fill(gap, last_time)
            except Exception:  # noqa: BLE001 - a failed backfill is counted, never fatal
                log.exception("%s: backfill of %s %d-%d failed", self.exchange, gap.symbol, gap.first, gap.last)
                metrics.BACKFILL_ERRORS.labels(self.exchange).inc()
                self.failed.append(gap)
            finally:
                self._queue.task_done()

    async def _fill(self, gap: Gap, last_time: float | None) -> None:
        url = self.protocol.backfill_url(self.rest_url, gap, last_time)
        if url is None:
            log.warning("%s: cannot backfill %s %d-%d (no reference time)", self.exchange, gap.symbol, gap.first, gap.last)
            self.failed.append(gap)
            return
        assert self._session is not None
        for attempt in range(self._attempts):
            try:
                async with self._session.get(url) as response:
                    body = await response.read()
                    if response.status != 200:
                        raise aiohttp.ClientResponseError(response.request_info, (), status=response.status,
                                                          message=body[:200].decode(errors="replace"))
                break
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                if attempt + 1 == self._attempts:
                    log.error("%s: backfill %s %d-%d from %s failed: %s", self.exchange, gap.symbol, gap.first,
                              gap.last, url, exc)
                    metrics.BACKFILL_ERRORS.labels(self.exchange).inc()
                    self.failed.append(gap)
                    return
                await asyncio.sleep(0.5 * 2 ** attempt)
        ids = [i for i in self.protocol.backfill_ids(body) if gap.first <= i <= gap.last]
        received = time.monotonic()
        self._publish(gap.symbol, body, [
            (headers.RECEIVE_TIME_US, str(time.time_ns() // 1000).encode()),
            (headers.CONNECTION_ID, f"{self.exchange}-backfill".encode()),
            (headers.SOURCE, headers.SOURCE_BACKFILL),
            (headers.BACKFILL_RANGE, f"{gap.first}-{gap.last}".encode()),
            (headers.BACKFILL_URL, url.encode()),
        ], received)
        self.backfilled += len(ids)
        metrics.BACKFILLED.labels(self.exchange).inc(len(ids))
        log.info("%s: backfilled %d of %d missing trades of %s (%d-%d)", self.exchange, len(ids), gap.size,
                 gap.symbol, gap.first, gap.last)
        if ids and max(ids) < gap.last:  # paged: ask for the rest
            self.submit(Gap(gap.symbol, max(ids) + 1, gap.last), last_time)
