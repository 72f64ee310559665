"""Backfill of detected gaps from the exchange's REST API, off the receive path.

The REST response body is published to the raw topic as received, marked with
``streamapp.source: rest-backfill`` and the missing id range it was asked for, so the
normalizer can tell it from WebSocket frames and keep only the ids in that range.

Nothing is dropped silently. A page is fetched again (with backoff) after an HTTP error;
a page holding no trade of the range is asked for again ``empty_attempts`` times with
backoff, then the range is given up: counted (``streamapp_feed_backfill_failed_ranges``,
``…_failed_trades``), logged as a FAILED range and kept in :attr:`Backfiller.failed`. A
page the producer refuses (buffer full) is published again later; one whose delivery
fails comes back as a new gap (:mod:`streamapp.feeds.handler`). Pages follow the exchange's
paging: Binance by id (``fromId``), Kraken by time (``since`` = the last page's ``last``).
Queued gaps of a symbol that one page covers are fetched together.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Callable

import aiohttp

from streamapp import headers
from streamapp.backoff import backoff_delay
from streamapp.feeds import metrics
from streamapp.feeds.gaps import Gap

log = logging.getLogger(__name__)

# publish(key, body, headers, received monotonic, the range it fills, the cursor it was asked with) -> accepted
Publish = Callable[[str, bytes, list[tuple[str, bytes]], float, Gap, "str | None"], bool]


@dataclass(frozen=True)
class _Job:
    gap: Gap
    since: str | None   # the exchange's paging cursor for this page (Kraken: ns time), None for Binance
    empty: int = 0      # pages so far that held nothing of the range
    refused: int = 0    # times the producer refused this page


class Backfiller:
    def __init__(self, protocol: ModuleType, rest_url: str, publish: Publish, *, attempts: int = 3,
                 empty_attempts: int = 3, retry_base_s: float = 0.5, retry_cap_s: float = 10.0,
                 page_size: int | None = None, timeout_s: float = 10.0) -> None:
        self.protocol = protocol
        self.exchange = protocol.EXCHANGE
        self.rest_url = rest_url
        self._publish = publish
        self._attempts = attempts
        self.empty_attempts = empty_attempts
        self._retry_base = retry_base_s
        self._retry_cap = retry_cap_s
        self._page = page_size or protocol.BACKFILL_PAGE
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._delayed: set[asyncio.TimerHandle] = set()
        self._task: asyncio.Task | None = None
        self._busy = False
        self._session: aiohttp.ClientSession | None = None
        self.backfilled = 0
        self.failed: list[Gap] = []

    def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        self._task = asyncio.create_task(self._work(), name=f"{self.exchange}-backfill")

    def submit(self, gap: Gap, last_time: float | None) -> None:
        """Fill ``gap``; ``last_time`` is the time (s) of the trade just before it (Kraken pages by time)."""
        self._queue.put_nowait(_Job(gap, self.protocol.backfill_since(last_time)))

    def resubmit(self, gap: Gap, since: str | None) -> None:
        """Fill ``gap`` again from the page cursor it was fetched with (its page was not delivered)."""
        self._queue.put_nowait(_Job(gap, since))

    def idle(self) -> bool:
        """Nothing queued, waiting for a retry, or being fetched."""
        return not self._delayed and not self._busy and self._queue.empty()

    async def drain(self, timeout_s: float) -> None:
        """Let queued backfills finish (on shutdown), up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self.idle() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not self.idle():
            log.warning("%s: %d backfill(s) unfinished at shutdown (a restart finds their gaps again)",
                        self.exchange, self._queue.qsize() + len(self._delayed))

    async def close(self) -> None:
        for handle in self._delayed:
            handle.cancel()
        self._delayed.clear()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session:
            await self._session.close()

    def _later(self, job: _Job, tries: int) -> None:
        delay = backoff_delay(tries, self._retry_base, self._retry_cap, jitter=False)
        loop = asyncio.get_running_loop()

        def requeue() -> None:
            self._delayed.discard(handle)
            self._queue.put_nowait(job)

        handle = loop.call_later(delay, requeue)
        self._delayed.add(handle)

    def _give_up(self, gap: Gap, why: str) -> None:
        metrics.BACKFILL_FAILED_RANGES.labels(self.exchange).inc()
        metrics.BACKFILL_FAILED_TRADES.labels(self.exchange).inc(gap.size)
        self.failed.append(gap)
        log.error("%s: backfill FAILED range %s %d-%d (%d trades): %s", self.exchange, gap.symbol, gap.first,
                  gap.last, gap.size, why)

    def _coalesce(self, job: _Job) -> _Job:
        """``job`` merged with the queued jobs of its symbol that one page from its start covers: many
        small gaps (a producer refusing every other frame) cost a few requests, not one each. The ids
        published live in between come again; Silver deduplicates them."""
        others: list[_Job] = []
        while not self._queue.empty():
            others.append(self._queue.get_nowait())
            self._queue.task_done()
        others.sort(key=lambda j: j.gap.first)
        rest = []
        for other in others:
            gap = job.gap
            span = max(gap.last, other.gap.last) - min(gap.first, other.gap.first) + 1
            if other.gap.symbol == gap.symbol and span <= self._page:
                since = [c for c in (job.since, other.since) if c is not None]
                job = _Job(Gap(gap.symbol, min(gap.first, other.gap.first), max(gap.last, other.gap.last)),
                           min(since, key=int) if since else None, min(job.empty, other.empty),
                           min(job.refused, other.refused))
            else:
                rest.append(other)
        for other in rest:
            self._queue.put_nowait(other)
        return job

    async def _work(self) -> None:
        while True:
            job = self._coalesce(await self._queue.get())
            self._busy = True
            try:
                await self._fill(job)
            except Exception as exc:  # noqa: BLE001 - a failed backfill is counted, never fatal
                log.exception("%s: backfill of %s %d-%d failed", self.exchange, job.gap.symbol, job.gap.first,
                              job.gap.last)
                metrics.BACKFILL_ERRORS.labels(self.exchange).inc()
                self._give_up(job.gap, f"{type(exc).__name__}: {exc}")
            finally:
                self._busy = False
                self._queue.task_done()

    async def _fill(self, job: _Job) -> None:
        gap = job.gap
        url = self.protocol.backfill_url(self.rest_url, gap, job.since, self._page)
        if url is None:
            self._give_up(gap, "no reference time to page from (the trade before the gap is unknown)")
            return
        body = await self._get(url)
        if body is None:
            metrics.BACKFILL_ERRORS.labels(self.exchange).inc()
            self._give_up(gap, f"{url} failed {self._attempts} times")
            return
        trades, next_since = self.protocol.backfill_page(body)
        ids = [i for i, _ in trades if gap.first <= i <= gap.last]
        if not ids:
            if trades and max(i for i, _ in trades) < gap.first and next_since not in (None, job.since):
                self._queue.put_nowait(_Job(gap, next_since, job.empty))  # a page before the gap: page on
                return
            metrics.BACKFILL_EMPTY_PAGES.labels(self.exchange).inc()
            if job.empty + 1 >= self.empty_attempts:
                self._give_up(gap, f"{job.empty + 1} pages held none of its trades (last: {url})")
                return
            log.warning("%s: backfill page for %s %d-%d held none of its trades (%s); asking again", self.exchange,
                        gap.symbol, gap.first, gap.last, url)
            self._later(_Job(gap, job.since, job.empty + 1, job.refused), job.empty)
            return
        received = time.monotonic()
        accepted = self._publish(gap.symbol, body, [
            (headers.RECEIVE_TIME_US, str(time.time_ns() // 1000).encode()),
            (headers.CONNECTION_ID, f"{self.exchange}-backfill".encode()),
            (headers.SOURCE, headers.SOURCE_BACKFILL),
            (headers.BACKFILL_RANGE, f"{gap.first}-{gap.last}".encode()),
            (headers.BACKFILL_URL, url.encode()),
        ], received, gap, job.since)
        if not accepted:  # the producer's buffer is full: the page is not lost, publish it later
            log.warning("%s: backfill of %s %d-%d refused by the producer; again later", self.exchange, gap.symbol,
                        gap.first, gap.last)
            self._later(_Job(gap, job.since, job.empty, job.refused + 1), job.refused)
            return
        self.backfilled += len(ids)
        metrics.BACKFILLED.labels(self.exchange).inc(len(ids))
        log.info("%s: backfilled %d of %d missing trades of %s (%d-%d)", self.exchange, len(ids), gap.size,
                 gap.symbol, gap.first, gap.last)
        if min(ids) > gap.first:  # paged by time from too late a start: the head is not in any later page
            self._give_up(Gap(gap.symbol, gap.first, min(ids) - 1), f"the page {url} starts after them")
        if max(ids) < gap.last:  # paged: ask for the rest
            self._queue.put_nowait(_Job(Gap(gap.symbol, max(ids) + 1, gap.last), next_since))

    async def _get(self, url: str) -> bytes | None:
        assert self._session is not None
        for attempt in range(self._attempts):
            try:
                async with self._session.get(url) as response:
                    body = await response.read()
                    if response.status != 200:
                        raise aiohttp.ClientResponseError(response.request_info, (), status=response.status,
                                                          message=body[:200].decode(errors="replace"))
                return body
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                log.warning("%s: backfill request %s failed (%d of %d): %s", self.exchange, url, attempt + 1,
                            self._attempts, exc)
                if attempt + 1 < self._attempts:
                    await asyncio.sleep(backoff_delay(attempt, self._retry_base, self._retry_cap, jitter=False))
        return None
