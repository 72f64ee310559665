"""The simulator's HTTP/WebSocket server (aiohttp).

Routes (one port for every exchange; only the URL differs from the real ones):

- ``/stream`` (also ``/ws``): Binance spot combined streams; ``?streams=a@trade/b@trade`` or
  ``{"method":"SUBSCRIBE","params":[..],"id":1}``; ``LIST_SUBSCRIPTIONS`` answered.
- ``/fstream/stream`` (also ``/fstream/ws``): Binance USDⓈ-M futures, the same protocol
  (the real one is ``wss://fstream.binance.com/stream``).
- ``/v2``: Kraken WebSocket v2: status on connect, ``subscribe`` to ``trade`` (acks, optional
  snapshot of up to 50 earlier trades), ``ping``/``pong``, a heartbeat each idle second.
- ``/api/v3/historicalTrades`` (spot), ``/fapi/v1/historicalTrades`` (futures), ``/0/public/Trades``
  (Kraken): REST trade history from the captures.
- ``/api/v3/exchangeInfo``, ``/fapi/v1/exchangeInfo``, ``/0/public/AssetPairs``: what the exchange
  lists, in the real formats (the bundled lists plus the captures' symbols; see ``listings``).
- ``POST /control/{drop,stall,malformed,skip,shutdown}[?arg=N]``: one-shot faults.
- ``/metrics`` (Prometheus), ``/health``.

Streams replay from a shared head per stream: a new connection starts where the last one
stopped, so a dropped connection loses nothing unless a fault skips frames; overlapping
connections both receive what they subscribe to. With ``live=True`` (``--live``) the streams
run on the wall clock from the first subscription instead, listened to or not, as on a real
exchange: a client that comes back after a while has missed what was sent meanwhile.
With ``repeat=N`` (``--repeat N``, Binance captures) each stream is replayed N times in a row,
every round with its trade ids moved on by the stream's id span and its times by the capture's
duration: one short capture feeds a long run (a soak) with new, gap-free trades.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from bisect import bisect_left
from decimal import Decimal

import orjson
from aiohttp import WSMsgType, web
from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from streamapp.exchanges import BINANCE, BINANCEUSDM, KRAKEN
from streamapp.normalize.timeutil import rfc3339_to_us
from streamapp.simulator import listings
from streamapp.simulator.capture import Item, Timeline
from streamapp.simulator.faults import Faults

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _History:
    """A Binance ``historicalTrades`` endpoint as documented: spot pages up to 1000 trades and
    says ``isBestMatch``; USDⓈ-M futures page up to 500 (default 100) and do not."""

    exchange: str
    endpoint: str  # the metrics label
    default_limit: int
    max_limit: int
    best_match: bool


_BINANCE_HISTORY = {
    "/api/v3/historicalTrades": _History(BINANCE, "historicalTrades", 500, 1000, True),
    "/fapi/v1/historicalTrades": _History(BINANCEUSDM, "fapi/historicalTrades", 100, 500, False),
}


def parse_speed(value: str | float) -> float:
    """``1``, ``10`` or ``max`` (as fast as possible) -> a replay factor."""
    if isinstance(value, str) and value.strip().lower() == "max":
        return math.inf
    speed = float(value)
    if speed <= 0:
        raise ValueError(f"speed {value!r} must be positive or 'max'")
    return speed


@dataclass(eq=False)
class _Session:
    exchange: str
    ws: web.WebSocketResponse
    request: web.Request
    conn_id: int
    streams: set[str] = field(default_factory=set)
    pos: dict[str, int] = field(default_factory=dict)
    outbox: asyncio.Queue = field(default_factory=asyncio.Queue)
    sent_trades: int = 0
    opened: float = field(default_factory=time.monotonic)


class Simulator:
    def __init__(self, timelines: dict[str, Timeline], *, speed: float = math.inf, faults: Faults | None = None,
                 heartbeat_s: float = 1.0, live: bool = False, repeat: int = 1) -> None:
        if live and not math.isfinite(speed):
            raise ValueError("a live simulator needs a finite speed (1, 10, ...), not max")
        if repeat < 1:
            raise ValueError(f"repeat {repeat} must be 1 or more")
        if repeat > 1 and (live or timelines.get(KRAKEN, Timeline(KRAKEN)).items):
            raise ValueError("repeat replays Binance captures (spot, futures), and not with live")
        self.repeat = repeat
        # Per exchange: how far each round moves trade times (ids: ``_id_range``, per symbol).
        self._round_us: dict[str, int] = {}
        if repeat > 1:
            for name, timeline in timelines.items():
                if timeline.items:
                    first, last = timeline.items[0].ts_us, timeline.items[-1].ts_us
                    self._round_us[name] = last - first + max(1, (last - first) // max(1, len(timeline.items) - 1))
        self.timelines = timelines
        self.speed = speed
        self.live = live
        self._clock_start: float | None = None  # live: when the streams started (the first subscription)
        self.faults = faults or Faults()
        self.heartbeat_s = heartbeat_s
        self.head: dict[tuple[str, str], int] = {}
        self._conn_ids = itertools.count(1)
        self.sessions: set[_Session] = set()
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_* (memory, CPU), like every streamapp process serves
        self.m_connections = Gauge("streamapp_simulator_connections", "Open connections.", ["exchange"],
                                   registry=self.registry)
        self.m_frames = Counter("streamapp_simulator_frames_sent", "Frames sent, by kind.", ["exchange", "kind"],
                                registry=self.registry)
        self.m_faults = Counter("streamapp_simulator_faults", "Faults injected.", ["exchange", "fault"],
                                registry=self.registry)
        self.m_rest = Counter("streamapp_simulator_rest_requests", "REST requests (history, metadata).", ["endpoint"],
                              registry=self.registry)
        self.skipped: list[tuple[str, int]] = []  # (stream, capture seq) of frames skipped by faults
        self._trades = self._index_trades()
        # Per (exchange, symbol): its first trade id and how far each round moves ids (repeat; WebSocket and REST alike).
        self._id_range: dict[tuple[str, str], tuple[int, int]] = {
            key: (min(ids), max(ids) - min(ids) + 1) for key, trades in self._trades.items()
            if repeat > 1 and (ids := [t["t"] for t in trades])}
        self.listed = listings.listed(timelines)  # exchange id -> symbols its metadata endpoint lists

    # --- app -------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        for prefix, exchange in (("", BINANCE), ("/fstream", BINANCEUSDM)):
            handler = functools.partial(self._binance, exchange)
            app.router.add_get(f"{prefix}/stream", handler)
            app.router.add_get(f"{prefix}/ws", handler)
            app.router.add_get(f"{prefix}/ws/{{path:.*}}", handler)
        app.router.add_get("/v2", self._kraken)
        for path, history in _BINANCE_HISTORY.items():
            app.router.add_get(path, functools.partial(self._binance_history, history))
        app.router.add_get("/0/public/Trades", self._kraken_history)
        app.router.add_get("/api/v3/exchangeInfo", self._metadata("exchangeInfo", listings.binance_exchange_info,
                                                                  "binance"))
        app.router.add_get("/fapi/v1/exchangeInfo", self._metadata(
            "fapi/exchangeInfo", lambda symbols: listings.binance_exchange_info(symbols, futures=True), "binanceusdm"))
        app.router.add_get("/0/public/AssetPairs", self._metadata("AssetPairs", listings.kraken_asset_pairs, "kraken"))
        app.router.add_post("/control/{fault}", self._control)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", lambda _r: web.json_response({"status": "ok"}))
        return app

    def _metadata(self, endpoint: str, render, exchange: str):
        async def handler(_request: web.Request) -> web.Response:
            self.m_rest.labels(endpoint).inc()
            return web.Response(body=render(self.listed[exchange]), content_type="application/json")
        return handler

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _control(self, request: web.Request) -> web.Response:
        fault = request.match_info["fault"]
        arg = request.query.get("arg")
        try:
            self.faults.request(fault, float(arg) if arg is not None else None)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"requested": fault, "arg": arg, "open_connections": len(self.sessions)})

    # --- WebSocket endpoints -------------------------------------------------------
    async def _binance(self, exchange: str, request: web.Request) -> web.WebSocketResponse:
        session = await self._accept(exchange, request)
        streams = request.query.get("streams", "")
        for stream in filter(None, streams.split("/")):
            self._subscribe(session, stream.lower())
        return await self._serve(session, self._binance_message)

    async def _kraken(self, request: web.Request) -> web.WebSocketResponse:
        session = await self._accept(KRAKEN, request)
        await session.ws.send_str(orjson.dumps({"channel": "status", "type": "update", "data": [{
            "api_version": "v2", "connection_id": session.conn_id, "system": "online",
            "version": "2.0.9-simulator"}]}).decode())
        return await self._serve(session, self._kraken_message)

    async def _accept(self, exchange: str, request: web.Request) -> _Session:
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=1 << 20)
        await ws.prepare(request)
        session = _Session(exchange, ws, request, next(self._conn_ids))
        self.sessions.add(session)
        self.m_connections.labels(exchange).inc()
        log.info("%s connection %d from %s", exchange, session.conn_id, request.remote)
        return session

    async def _serve(self, session: _Session, on_message) -> web.WebSocketResponse:
        sender = asyncio.create_task(self._send_loop(session))
        try:
            async for msg in session.ws:
                if msg.type == WSMsgType.TEXT:
                    for reply in on_message(session, msg.data):
                        session.outbox.put_nowait(reply)
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            self.sessions.discard(session)
            self.m_connections.labels(session.exchange).dec()
            log.info("%s connection %d closed after %d trade frames", session.exchange, session.conn_id,
                     session.sent_trades)
        return session.ws

    def _subscribe(self, session: _Session, stream: str) -> None:
        session.streams.add(stream)
        pos = self.head.get((session.exchange, stream), 0)
        if self.live and self._clock_start is None:  # the first subscription starts the clock
            self._clock_start = time.monotonic()
        elif self.live:  # what was due while nobody listened is gone
            items = self.timelines[session.exchange].by_stream.get(stream, [])
            pos = max(pos, bisect_left(items, self._live_now_us(session.exchange), key=lambda item: item.ts_us))
        session.pos[stream] = pos

    def _live_origin(self, exchange: str) -> tuple[int, float]:
        """Live mode: (capture time, monotonic time) that the exchange's stream clock started from."""
        items = self.timelines[exchange].items
        assert self._clock_start is not None
        return (items[0].ts_us if items else 0), self._clock_start

    def _live_now_us(self, exchange: str) -> float:
        ts0, t0 = self._live_origin(exchange)
        return ts0 + (time.monotonic() - t0) * self.speed * 1e6

    def _binance_message(self, session: _Session, text: str) -> list[str]:
        try:
            msg = orjson.loads(text)
            method, req_id = msg["method"], msg.get("id")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return [orjson.dumps({"error": {"code": 3, "msg": "Invalid JSON"}, "id": None}).decode()]
        if method == "SUBSCRIBE":
            for stream in msg.get("params", []):
                self._subscribe(session, str(stream).lower())
            return [orjson.dumps({"result": None, "id": req_id}).decode()]
        if method == "UNSUBSCRIBE":
            for stream in msg.get("params", []):
                session.streams.discard(str(stream).lower())
            return [orjson.dumps({"result": None, "id": req_id}).decode()]
        if method == "LIST_SUBSCRIPTIONS":
            return [orjson.dumps({"result": sorted(session.streams), "id": req_id}).decode()]
        return [orjson.dumps({"error": {"code": 2, "msg": f"Invalid request: unknown method {method}"},
                              "id": req_id}).decode()]

    def _kraken_message(self, session: _Session, text: str) -> list[str]:
        now = _rfc3339(time.time())
        try:
            msg = orjson.loads(text)
            method, req_id = msg["method"], msg.get("req_id")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return [orjson.dumps({"error": "Malformed request", "success": False, "time_in": now,
                                  "time_out": now}).decode()]
        if method == "ping":
            return [orjson.dumps({"method": "pong", "req_id": req_id, "time_in": now, "time_out": now}).decode()]
        if method != "subscribe" or msg.get("params", {}).get("channel") != "trade":
            return [orjson.dumps({"error": f"Unsupported method or channel: {method}", "method": method,
                                  "req_id": req_id, "success": False, "time_in": now, "time_out": now}).decode()]
        params = msg["params"]
        snapshot = bool(params.get("snapshot", True))
        timeline = self.timelines[KRAKEN]
        replies = []
        for symbol in params.get("symbol", []):
            if symbol not in timeline.by_stream:
                replies.append(orjson.dumps({"error": f"Currency pair not supported {symbol}", "method": "subscribe",
                                             "req_id": req_id, "success": False, "symbol": symbol,
                                             "time_in": now, "time_out": now}).decode())
                continue
            self._subscribe(session, symbol)
            replies.append(orjson.dumps({"method": "subscribe", "req_id": req_id, "result": {
                "channel": "trade", "snapshot": snapshot, "symbol": symbol}, "success": True,
                "time_in": now, "time_out": now}).decode())
            if snapshot:
                before = timeline.by_stream[symbol][:session.pos[symbol]]
                trades = [t for item in before for t in item.trades][-50:]
                replies.append(orjson.dumps({"channel": "trade", "type": "snapshot", "data": trades}).decode())
        return replies

    # --- replay --------------------------------------------------------------------
    def _next_item(self, session: _Session) -> Item | None:
        """The next item of the session's streams; positions run over every round (``repeat``)."""
        best: Item | None = None
        best_key = (0, 0)
        by_stream = self.timelines[session.exchange].by_stream
        for stream in session.streams:
            items = by_stream.get(stream, ())
            pos = session.pos.get(stream, 0)
            if pos < len(items) * self.repeat:
                key = divmod(pos, len(items))  # (round, position in the round)
                key = (key[0], items[key[1]].seq)
                if best is None or key < best_key:
                    best, best_key = items[pos % len(items)], key
        return best

    def _round(self, session: _Session, item: Item) -> int:
        return session.pos[item.stream] // len(self.timelines[session.exchange].by_stream[item.stream])

    def _frame(self, exchange: str, item: Item, round_: int) -> str:
        """The frame as sent in round ``round_``: later rounds carry moved ids and times."""
        if round_ == 0:
            return item.frame.decode()
        msg = orjson.loads(item.frame)
        data = msg["data"]
        shift_ms = round_ * self._round_us[exchange] // 1000
        if data.get("e") == "trade":
            data["t"] += round_ * self._id_range[(exchange, data["s"])][1]
            for key in ("E", "T"):
                if key in data:
                    data[key] += shift_ms
        return orjson.dumps(msg).decode()

    def _advance(self, session: _Session, item: Item) -> None:
        session.pos[item.stream] += 1
        key = (session.exchange, item.stream)
        self.head[key] = max(self.head.get(key, 0), session.pos[item.stream])

    async def _send_loop(self, session: _Session) -> None:
        ws, exchange = session.ws, session.exchange
        base: tuple[int, float] | None = None  # (capture ts, monotonic) of this connection's first frame
        max_s = self.faults.max_connection_s
        while not ws.closed:
            while not session.outbox.empty():
                await ws.send_str(session.outbox.get_nowait())
                self.m_frames.labels(exchange, "control").inc()
            if max_s and time.monotonic() - session.opened > max_s:
                log.info("%s connection %d reached max age %.1fs: closing", exchange, session.conn_id, max_s)
                await ws.close(code=1000, message=b"max connection age")
                return
            item = self._next_item(session)
            wait = self.heartbeat_s
            if item is not None:
                if self.live:  # frame times count from the first subscription, not from this connection
                    base = self._live_origin(exchange)
                round_ = self._round(session, item)
                ts_us = item.ts_us + round_ * self._round_us.get(exchange, 0)
                if base is None or not math.isfinite(self.speed):
                    base = base or (ts_us, time.monotonic())
                    wait = 0.0
                else:
                    wait = (ts_us - base[0]) / 1e6 / self.speed - (time.monotonic() - base[1])
            if wait > 0:
                try:
                    reply = await asyncio.wait_for(session.outbox.get(), min(wait, self.heartbeat_s))
                    session.outbox.put_nowait(reply)
                except asyncio.TimeoutError:
                    if item is None and exchange == KRAKEN and session.streams:
                        await ws.send_str('{"channel":"heartbeat"}')
                        self.m_frames.labels(exchange, "heartbeat").inc()
                continue
            assert item is not None
            await ws.send_str(self._frame(exchange, item, self._round(session, item)))
            self._advance(session, item)
            session.sent_trades += 1
            self.m_frames.labels(exchange, "trade").inc()
            for fault, arg in self.faults.due(session.sent_trades):
                if await self._inject(session, fault, arg):
                    return

    async def _inject(self, session: _Session, fault: str, arg: float | None) -> bool:
        """Apply one fault; True if the connection is gone."""
        ws, exchange = session.ws, session.exchange
        self.m_faults.labels(exchange, fault).inc()
        log.info("%s connection %d: injecting %s %s", exchange, session.conn_id, fault, arg if arg is not None else "")
        if fault == "drop":
            transport = session.request.transport
            if transport is not None:
                transport.abort()  # no close frame: like a network failure
            return True
        if fault == "stall":
            await asyncio.sleep(arg if arg is not None else self.faults.stall_s)
        elif fault == "malformed":
            await ws.send_str('{"stream":"btcusdt@trade","data":{"e":"trade","E":17231613')
            self.m_frames.labels(exchange, "malformed").inc()
        elif fault == "skip":
            for _ in range(int(arg or 1)):
                item = self._next_item(session)
                if item is None:
                    break
                self.skipped.append((item.stream, item.seq))
                self._advance(session, item)
        elif fault == "shutdown":
            if exchange == BINANCE:
                await ws.send_str(orjson.dumps({"e": "serverShutdown", "E": time.time_ns() // 1_000_000}).decode())
            grace = self.faults.shutdown_grace_s
            loop = asyncio.get_running_loop()
            loop.call_later(grace, lambda: asyncio.ensure_future(ws.close(code=1001, message=b"server shutdown")))
        return False

    # --- REST history ----------------------------------------------------------------
    def _index_trades(self) -> dict[tuple[str, str], list[dict]]:
        out: dict[tuple[str, str], list[dict]] = {}
        for exchange, timeline in self.timelines.items():
            for item in timeline.items:
                for trade in item.trades:
                    if exchange in (BINANCE, BINANCEUSDM):
                        out.setdefault((exchange, trade["s"]), []).append(trade)
                    else:
                        out.setdefault((KRAKEN, trade["symbol"].replace("/", "")), []).append(trade)
        return out

    async def _binance_history(self, history: _History, request: web.Request) -> web.Response:
        self.m_rest.labels(history.endpoint).inc()
        symbol = request.query.get("symbol", "")
        limit = min(int(request.query.get("limit", history.default_limit)), history.max_limit)
        trades = self._trades.get((history.exchange, symbol))
        if trades is None:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        from_id = int(request.query.get("fromId", trades[-1]["t"] - limit + 1))
        rows = []
        # With repeat, later rounds serve the same trades with moved ids and times (as the WebSocket sends them).
        first_id, span = self._id_range.get((history.exchange, symbol), (0, 0))
        round_us = self._round_us.get(history.exchange, 0)
        for round_ in range(max(0, min(self.repeat - 1, (from_id - first_id) // span)) if span else 0, self.repeat):
            for t in trades:
                trade_id = t["t"] + round_ * span
                if trade_id >= from_id:
                    row = {"id": trade_id, "price": t["p"], "qty": t["q"],
                           "quoteQty": str(Decimal(t["p"]) * Decimal(t["q"])),
                           "time": t["T"] + round_ * round_us // 1000, "isBuyerMaker": t["m"]}
                    if history.best_match:
                        row["isBestMatch"] = t.get("M", True)
                    rows.append(row)
                    if len(rows) == limit:
                        break
            if len(rows) == limit:
                break
        return web.Response(body=orjson.dumps(rows), content_type="application/json")

    async def _kraken_history(self, request: web.Request) -> web.Response:
        """Kraken's ``GET /0/public/Trades?pair=..&since=..&count=..``, in Kraken's format::

            {"error":[],"result":{"BTCUSD":[["58721.2","0.02798644",1617666461.465618,"s","m","",1],..],
             "last":"1617666461465618000"}}

        Rows ``[price, volume, time (seconds, a JSON number), side b/s, order type m/l, misc,
        trade_id]`` of trades strictly after ``since`` (seconds, or nanoseconds as in ``last``),
        ``count`` at most (default and cap 1000), oldest first; ``last`` (ns) pages on."""
        self.m_rest.labels("Trades").inc()
        pair = request.query.get("pair", "").replace("/", "")
        trades = self._trades.get((KRAKEN, pair))
        if trades is None:
            return web.json_response({"error": ["EQuery:Unknown asset pair"]})
        try:
            since = Decimal(request.query.get("since", "0"))
            count = min(int(request.query.get("count", 1000)), 1000)
        except (ArithmeticError, ValueError):
            return web.json_response({"error": ["EGeneral:Invalid arguments"]})
        since_ns = int(since) if since > 10**12 else int(since * 10**9)  # ns (a `last`) or seconds
        rows, last_ns = [], since_ns
        for t in trades:
            at_us = rfc3339_to_us(t["timestamp"])
            if at_us * 1000 > since_ns:
                rows.append([_decimal_text(t["price"]), _decimal_text(t["qty"]), at_us / 1e6, t["side"][0],
                             t["ord_type"][0], "", t["trade_id"]])
                last_ns = at_us * 1000
                if len(rows) == count:
                    break
        return web.Response(body=orjson.dumps({"error": [], "result": {pair: rows, "last": str(last_ns)}}),
                            content_type="application/json")


def _decimal_text(number: float | int) -> str:
    """A capture number as Kraken's REST prints it: a plain decimal string (``2e-05`` -> ``0.00002``)."""
    return format(Decimal(repr(number)), "f")


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def serve(simulator: Simulator, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set."""
    runner = web.AppRunner(simulator.app(), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("exchange simulator on http://%s:%d (binance ws /stream, binanceusdm ws /fstream/stream, kraken ws /v2)",
             host, port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


class RunningSimulator:
    """Start/stop a simulator inside a running event loop (tests, embedding)."""

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0):
        self.simulator, self.host, self.port = simulator, host, port
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> "RunningSimulator":
        self._runner = web.AppRunner(self.simulator.app(), handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the actual port when 0 was asked
        return self

    async def __aexit__(self, *exc) -> None:
        for session in list(self.simulator.sessions):
            await session.ws.close()
        assert self._runner is not None
        await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def ws_url(self, path: str) -> str:
        return f"ws://{self.host}:{self.port}{path}"
