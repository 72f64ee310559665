"""Exchange-agnostic transport: connect, ping, idle probes, backoff, reconnect, rotation.

A :class:`FeedRunner` spreads symbols over connections (``symbols_per_connection``),
and keeps each connection slot alive: WebSocket ping/pong (websockets' keepalive), an
application-level probe when the exchange goes quiet and a reconnect when it stays quiet
(``idle_timeout_s``), reconnects with capped exponential backoff and jitter, resubscribes,
and rotates a connection before the exchange's cut-off (or on ``serverShutdown``) by
opening the new one first and closing the old one after an overlap, so nothing is missed.
Every received frame goes, classified by the exchange's protocol module, to a sink.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from types import ModuleType
from typing import Protocol as TypingProtocol

import websockets
from websockets.exceptions import WebSocketException

from streamapp.backoff import backoff_delay
from streamapp.feeds import metrics
from streamapp.feeds.frames import Frame, Kind

log = logging.getLogger(__name__)


def spread(symbols: list[str], per_connection: int) -> list[list[str]]:
    """Symbols split into connections of at most ``per_connection``, in order, duplicates removed."""
    unique = list(dict.fromkeys(symbols))
    return [unique[i:i + per_connection] for i in range(0, len(unique), per_connection)]


class Sink(TypingProtocol):
    def handle(self, conn_id: str, receive_us: int, received: float, data: bytes, frame: Frame) -> None: ...
    def close(self) -> None: ...


@dataclass
class FeedConfig:
    url: str
    symbols: list[str]
    symbols_per_connection: int
    idle_timeout_s: float
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    open_timeout_s: float = 10.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    max_connection_age_s: float | None = None  # rotate proactively after this long
    overlap_s: float = 5.0                     # keep the old connection this long after the new one is up


@dataclass
class _Conn:
    conn_id: str
    ws: websockets.ClientConnection
    opened: float
    rotate: asyncio.Event = field(default_factory=asyncio.Event)
    first_trade: asyncio.Event = field(default_factory=asyncio.Event)
    trades: int = 0
    reader: asyncio.Task | None = None
    close_reason: str = "closed"
    # While a rotation overlaps two connections, the new one's frames are held back until the
    # old one has delivered everything the new one does not cover (per symbol: up to first id - 1).
    held: list | None = None
    first_ids: dict[str, int] = field(default_factory=dict)
    last_ids: dict[str, int] = field(default_factory=dict)


class IdleTimeout(Exception):
    pass


class FeedRunner:
    """Runs every connection of one exchange until ``stop`` is set."""

    def __init__(self, config: FeedConfig, protocol: ModuleType, sink: Sink, *, rng: random.Random | None = None):
        self.config = config
        self.protocol = protocol
        self.exchange: str = protocol.EXCHANGE
        self.sink = sink
        self._rng = rng or random.Random()
        self._req_ids = itertools.count(1)
        self._conn_seq = itertools.count(1)
        self.reconnects = 0
        self.counts: dict[str, int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        slots = spread(self.config.symbols, self.config.symbols_per_connection)
        log.info("%s: %d symbols over %d connection(s) to %s", self.exchange, len(self.config.symbols),
                 len(slots), self.config.url)
        tasks = [asyncio.create_task(self._slot(n, symbols, stop), name=f"{self.exchange}-slot-{n}")
                 for n, symbols in enumerate(slots)]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- one connection slot -------------------------------------------------
    async def _slot(self, slot: int, symbols: list[str], stop: asyncio.Event) -> None:
        attempt = 0
        current: _Conn | None = None
        try:
            while not stop.is_set():
                if current is None:
                    try:
                        current = await self._open(slot, symbols)
                    except (OSError, WebSocketException, asyncio.TimeoutError) as exc:
                        delay = backoff_delay(attempt, self.config.backoff_base_s, self.config.backoff_cap_s, self._rng)
                        attempt += 1
                        log.warning("%s slot %d: connect to %s failed (%s: %s); retry %d in %.2fs", self.exchange,
                                    slot, self.config.url, type(exc).__name__, exc, attempt, delay)
                        await _sleep_unless(stop, delay)
                        continue
                age = self.config.max_connection_age_s
                timeout = None if age is None else max(0.0, current.opened + age - time.monotonic())
                rotate = asyncio.create_task(current.rotate.wait())
                done, _ = await asyncio.wait({current.reader, rotate}, timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                rotate.cancel()
                if current.reader in done:
                    reason = current.close_reason
                    # A connection that carried trades was healthy: reconnect at once. One that died
                    # before any trade counts as a failed attempt and backs off.
                    if current.trades:
                        attempt = 0
                    delay = 0.0 if attempt == 0 else backoff_delay(
                        attempt, self.config.backoff_base_s, self.config.backoff_cap_s, self._rng)
                    attempt += 1
                    current = None
                    self._reconnected(reason)
                    log.warning("%s slot %d: connection lost (%s); reconnecting in %.2fs", self.exchange, slot,
                                reason, delay)
                    await _sleep_unless(stop, delay)
                    continue
                # Rotation: proactive (age) or announced by the server. New first, then close old.
                why = "server_shutdown" if current.rotate.is_set() else "max_age"
                try:
                    fresh = await self._open(slot, symbols, hold=True)
                except (OSError, WebSocketException, asyncio.TimeoutError) as exc:
                    log.warning("%s slot %d: rotation (%s) could not open a new connection: %s; keeping the old",
                                self.exchange, slot, why, exc)
                    if age is not None:  # try again after a backoff delay
                        current.opened = time.monotonic() - age + backoff_delay(
                            attempt, self.config.backoff_base_s, self.config.backoff_cap_s, self._rng)
                    current.rotate.clear()
                    attempt += 1
                    continue
                await self._overlap(current, fresh)
                log.info("%s slot %d: rotated %s -> %s (%s)", self.exchange, slot, current.conn_id, fresh.conn_id, why)
                self._reconnected(why)
                await self._close(current, why)
                self._release(fresh)
                current = fresh
        finally:
            if current is not None:
                await self._close(current, "shutdown")

    async def _overlap(self, old: _Conn, new: _Conn) -> None:
        """Wait until the old connection has delivered up to where the new one starts, or it died,
        or ``overlap_s`` passed (then frames only the old one had in flight may be lost: logged)."""
        deadline = time.monotonic() + self.config.overlap_s
        while time.monotonic() < deadline and not old.reader.done():
            if new.first_trade.is_set() and all(old.last_ids.get(sym, first - 1) >= first - 1
                                                for sym, first in new.first_ids.items()):
                return
            await asyncio.sleep(0.01)
        if not old.reader.done():
            log.warning("%s: overlap of %s and %s timed out after %.1fs; closing the old one anyway",
                        self.exchange, old.conn_id, new.conn_id, self.config.overlap_s)

    def _release(self, conn: _Conn) -> None:
        held, conn.held = conn.held or [], None
        for args in held:
            self._deliver(*args)

    def _deliver(self, conn_id: str, receive_us: int, received: float, data: bytes, frame: Frame) -> None:
        try:
            self.sink.handle(conn_id, receive_us, received, data, frame)
        except Exception:  # noqa: BLE001 - one bad frame must never stop the handler
            log.exception("%s: sink failed on a %s frame; continuing", self.exchange, frame.kind.value)

    def _reconnected(self, reason: str) -> None:
        self.reconnects += 1
        metrics.RECONNECTS.labels(self.exchange, reason).inc()

    async def _open(self, slot: int, symbols: list[str], hold: bool = False) -> _Conn:
        ws = await websockets.connect(
            self.config.url,
            open_timeout=self.config.open_timeout_s,
            ping_interval=self.config.ping_interval_s,
            ping_timeout=self.config.ping_timeout_s,
            close_timeout=2,
            max_size=2 ** 24,
            max_queue=4096,
        )
        conn = _Conn(f"{self.exchange}-{slot}-{next(self._conn_seq)}-{uuid.uuid4().hex[:8]}", ws, time.monotonic(),
                     held=[] if hold else None)
        for message in self.protocol.subscribe_messages(symbols, next(self._req_ids)):
            await ws.send(message)
        conn.reader = asyncio.create_task(self._read(conn), name=conn.conn_id)
        metrics.CONNECTIONS.labels(self.exchange).inc()
        log.info("%s slot %d: connected %s, subscribed %d symbols", self.exchange, slot, conn.conn_id, len(symbols))
        return conn

    async def _close(self, conn: _Conn, why: str) -> None:
        conn.close_reason = why
        try:
            await conn.ws.close()
        except Exception:  # noqa: BLE001 - closing a broken socket may fail in many ways; it is closed either way
            pass
        if conn.reader is not None:
            conn.reader.cancel()
            await asyncio.gather(conn.reader, return_exceptions=True)

    async def _read(self, conn: _Conn) -> None:
        probe_after = self.config.idle_timeout_s / 2
        probed = False
        try:
            while True:
                try:
                    data = await asyncio.wait_for(conn.ws.recv(decode=False), probe_after)
                except asyncio.TimeoutError:
                    if probed:
                        raise IdleTimeout(f"nothing received for {self.config.idle_timeout_s:.1f}s") from None
                    probed = True
                    await conn.ws.send(self.protocol.probe_message(next(self._req_ids)))
                    continue
                probed = False
                receive_us = time.time_ns() // 1000
                received = time.monotonic()
                if isinstance(data, str):  # not with decode=False, but be safe
                    data = data.encode()
                frame = self.protocol.classify(data)
                self._count(frame)
                if frame.kind is Kind.TRADE:
                    conn.trades += 1
                    for symbol, ids in frame.ids.items():
                        conn.first_ids.setdefault(symbol, ids[0])
                        conn.last_ids[symbol] = max(ids[-1], conn.last_ids.get(symbol, ids[-1]))
                    if conn.trades == 1:
                        conn.first_trade.set()
                elif frame.kind is Kind.SHUTDOWN:
                    log.warning("%s: %s announced shutdown: rotating with overlap", self.exchange, conn.conn_id)
                    conn.rotate.set()
                elif frame.kind in (Kind.MALFORMED, Kind.UNKNOWN, Kind.ERROR):
                    log.warning("%s %s: %s frame (%s): %.200r", self.exchange, conn.conn_id, frame.kind.value,
                                frame.detail, data)
                else:
                    log.debug("%s %s: %s %s", self.exchange, conn.conn_id, frame.kind.value, frame.detail)
                if conn.held is not None:
                    conn.held.append((conn.conn_id, receive_us, received, data, frame))
                else:
                    self._deliver(conn.conn_id, receive_us, received, data, frame)
        except IdleTimeout as exc:
            conn.close_reason = "idle_timeout"
            log.warning("%s %s: %s", self.exchange, conn.conn_id, exc)
        except websockets.ConnectionClosed as exc:
            conn.close_reason = "closed"
            log.warning("%s %s: closed by peer or keepalive: %s", self.exchange, conn.conn_id, exc)
        except (OSError, WebSocketException) as exc:
            conn.close_reason = "error"
            log.warning("%s %s: connection error: %s", self.exchange, conn.conn_id, exc)
        finally:
            metrics.CONNECTIONS.labels(self.exchange).dec()
            try:
                await asyncio.wait_for(conn.ws.close(), 2)
            except Exception:  # noqa: BLE001
                pass

    def _count(self, frame: Frame) -> None:
        kind = frame.kind.value
        self.counts[kind] = self.counts.get(kind, 0) + 1
        metrics.FRAMES_RECEIVED.labels(self.exchange, kind).inc()


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    if seconds <= 0:
        return
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass
