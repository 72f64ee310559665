"""The local warehouse: embedded ClickHouse (chdb) behind the ClickHouse HTTP interface.

Run as ``python -m streamapp.stack.warehouse``. One chdb engine lives in this
process with its data in ``<home>/clickhouse``; it keeps running between
requests, so Kafka-engine tables and materialized views go on consuming while
nobody asks anything. clickhouse-connect, curl and Grafana talk to it as to a
ClickHouse server on ``clickhouse_url`` (default 127.0.0.1:8123).

Requests are parsed here (see :mod:`streamapp.stack.http_protocol`). Each request
runs on an engine client (a chdb ``connect`` handle: ClickHouse's session context)
of its own, or on its ``session_id``'s, on a pool of threads: requests run in
parallel and ``/ping`` never waits. URL settings, ``SET`` and ``USE`` live in that
handle only. Results are streamed block by block; a client that goes away has its
query killed. ``param_*`` values go to chdb's own parameter binding; insert data is
decompressed to a file and read with ``INSERT … FROM INFILE``.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from aiohttp import web

from streamapp.settings import Settings, get_settings
from streamapp.stack.http_protocol import (
    ClickHouseError,
    InsertSplit,
    KillQuery,
    RequestOptions,
    content_type,
    exception_block,
    first_keyword,
    has_result_set,
    header_length,
    is_empty_statement,
    kill_query,
    make_decoder,
    marker_comment,
    marker_condition,
    DATETIME_TZ_REVISION,
    output_format,
    parse_params,
    restore_native_timezones,
    without_format,
    quote_identifier,
    quote_string,
    set_statement,
    split_insert,
    stream_header_kind,
    summary_header,
)

logger = logging.getLogger(__name__)

READ_CHUNK = 1 << 20
SPOOL_IN_MEMORY = 1 << 20  # bodies above this go to a temp file
HEAD_BYTES = 1 << 20  # how much of a body is scanned for an INSERT's data start
MAX_QUERY_BYTES = 64 << 20  # a statement sent as text (not insert data) may be this big
DEFAULT_FORMAT = "TabSeparated"
DEFAULT_SESSION_TIMEOUT = 60.0  # ClickHouse's default_session_timeout
MAX_SESSION_TIMEOUT = 3600.0  # and max_session_timeout
DISCONNECT_POLL_S = 0.1  # how often a waiting request checks that its client is still there
STREAM_FIRST_FLUSH = 1 << 20  # a result up to this size is answered whole, with its summary
KILL_SYNC_WAIT_S = 30.0
# Statements whose result is streamed (when its format allows); others answer whole.
STREAMED_KEYWORDS = frozenset({"SELECT", "WITH"})  # chdb streams no other statement (DESCRIBE: BAD_ARGUMENTS)


# --- the engine ----------------------------------------------------------------


@dataclass
class Statement:
    """What the engine runs for one request. ``sql`` holds the request's bytes as text
    (``surrogateescape``: bytes that are not UTF-8 pass through unchanged)."""

    sql: str
    fmt: str
    params: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    database: str | None = None
    is_insert: bool = False
    native_types: list[str] | None = None  # the result's column types, to name DateTime zones

    def sql_bytes(self, token: str) -> bytes:
        return (marker_comment(token) + self.sql).encode("utf-8", "surrogateescape")


class Handle:
    """One engine client: ClickHouse's session context (``USE``, ``SET``, temporary tables).

    chdb (4.x) runs one embedded server per process; every ``connect`` to its path is an
    independent client, and clients run queries in parallel. A handle is used by one
    thread at a time.
    """

    def __init__(self, raw):
        self._raw = raw
        self._stream = None

    def query(self, sql: bytes | str, fmt: str = DEFAULT_FORMAT, params: dict[str, str] | None = None):
        try:
            return self._raw.query(sql, fmt, params=params or {})
        except RuntimeError as exc:
            raise ClickHouseError.from_engine(str(exc)) from None

    def text(self, sql: str) -> str:
        return self.query(sql, "TabSeparated").bytes().decode()

    def send(self, sql: bytes, fmt: str, params: dict[str, str]) -> None:
        """Start a streamed query; :meth:`fetch` its blocks."""
        try:
            self._stream = self._raw.send_query(sql, fmt, params=params or {})
        except RuntimeError as exc:
            raise ClickHouseError.from_engine(str(exc)) from None

    def fetch(self) -> tuple[bytes, int, int, bool]:
        """The next block of the streamed query: (bytes, rows, bytes read, last)."""
        try:
            result = self._raw.streaming_fetch_result(self._stream)
        except RuntimeError as exc:
            self._stream = None
            raise ClickHouseError.from_engine(str(exc)) from None
        if result is None or result.rows_read() == 0:
            self._stream = None
            return (b"" if result is None else result.bytes()), 0, 0, True
        return result.bytes(), result.rows_read(), result.bytes_read(), False

    def cancel(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                self._raw.streaming_cancel_query(stream)
            except RuntimeError:
                logger.debug("cancelling a stream that had ended", exc_info=True)

    def close(self) -> None:
        self.cancel()
        raw, self._raw = self._raw, None
        if raw is not None:
            raw.close()


class Engine:
    """The one embedded chdb server of this process, pinned by a keeper handle."""

    def __init__(self, path: Path):
        self.path = path
        self._keeper: Handle | None = None
        self.version = ""
        self.timezone = "UTC"

    def open(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._keeper = self.connect()
        except Exception as exc:
            raise RuntimeError(
                f"cannot open the ClickHouse data directory {self.path}: {exc}. "
                "Is another warehouse running on it? Stop it first (streamapp stack down)."
            ) from exc
        version, tz = self._keeper.text("SELECT version(), timezone()").rstrip("\n").split("\t")
        self.version, self.timezone = version, tz

    def connect(self) -> Handle:
        from chdb import _chdb  # imported here: loading chdb costs ~100 MB

        return Handle(_chdb.connect(str(self.path)))

    def close(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.close()

    def kill(self, condition: str) -> None:
        """Cancel the engine's queries matching ``condition`` (on ``system.processes``)."""
        handle = self.connect()
        try:
            handle.query(f"KILL QUERY WHERE {condition} ASYNC")
        finally:
            handle.close()


def prepare(handle: Handle, stmt: Statement, account: Account, session: bool) -> list[str]:
    """Give ``handle`` the request's database and settings; in a session, the statements
    that put the session's own back afterwards (URL settings last one request).

    ``readonly`` is applied last, as a server applies a request's settings together
    (``?readonly=1&max_threads=2`` works). It cannot be lowered again, so a session whose
    request raised it keeps that request's settings.
    """
    restore: list[str] = []
    settings = dict(stmt.settings)
    readonly = settings.pop("readonly", None)
    if account.readonly:
        readonly = "1" if readonly == "1" else "2"
    if session and stmt.database:
        current = handle.text("SELECT currentDatabase()").rstrip("\n")
        restore.append(f"USE {quote_identifier(current)}")
    if stmt.database:
        handle.query(f"USE {quote_identifier(stmt.database)}")
    if session and (settings or readonly is not None):
        names = ", ".join(quote_string(name) for name in [*settings, "readonly"])
        sql = f"SELECT name, value, changed FROM system.settings WHERE name IN ({names})"
        current = {}
        for line in handle.query(sql, "JSONEachRow").bytes().splitlines():
            row = json.loads(line)
            current[row["name"]] = (row["value"], row["changed"])
        # what the session has already needs no SET (and survives a session made read-only)
        settings = {k: v for k, v in settings.items() if k not in current or current[k][0] != v}
        if readonly is not None and current.get("readonly", ("0", 0))[0] == readonly:
            readonly = None
        if readonly is None:
            old = {k: current[k][0] if current[k][1] else None for k in settings if k in current}
            if old:
                restore.append(set_statement(old))
    if settings:
        handle.query(set_statement(settings))
    if readonly is not None:
        handle.query(set_statement({"readonly": readonly}))
    return restore


def result_types(handle: Handle, stmt: Statement) -> list[str] | None:
    """The column types of a SELECT's result (``DESCRIBE`` of it, nothing run), or ``None``."""
    try:
        sql = f"DESCRIBE TABLE ({without_format(stmt.sql)})".encode("utf-8", "surrogateescape")
        rows = handle.query(sql, "JSONEachRow", stmt.params).bytes().splitlines()
    except ClickHouseError:
        return None
    return [json.loads(row)["type"] for row in rows]


def _restore(handle: Handle, statements: list[str]) -> None:
    try:
        for sql in statements:
            handle.query(sql)
    except ClickHouseError:
        logger.exception("could not restore a session's settings after a request")


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


# --- the HTTP side ---------------------------------------------------------------


class Spool:
    """A request body: in memory while small, in a temp file beyond that."""

    def __init__(self, tmp_dir: Path):
        self._tmp_dir = tmp_dir
        self._buf = bytearray()
        self._file = None
        self.path: Path | None = None
        self.size = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self._file is None and len(self._buf) + len(data) <= SPOOL_IN_MEMORY:
            self._buf += data
            return
        if self._file is None:
            fd, name = tempfile.mkstemp(prefix="body-", dir=self._tmp_dir)
            self._file = os.fdopen(fd, "wb")
            self.path = Path(name)
            self._file.write(self._buf)
            self._buf = bytearray()
        self._file.write(data)

    def finish(self) -> None:
        if self._file is not None:
            self._file.close()

    def head(self, n: int) -> bytes:
        if self.path is None:
            return bytes(self._buf[:n])
        with open(self.path, "rb") as f:
            return f.read(n)

    def read_all(self) -> bytes:
        if self.path is None:
            return bytes(self._buf)
        return self.path.read_bytes()

    def copy_from(self, offset: int, out) -> None:
        if self.path is None:
            out.write(self._buf[offset:])
            return
        with open(self.path, "rb") as f:
            f.seek(offset)
            shutil.copyfileobj(f, out, READ_CHUNK)

    async def send(self, response: web.StreamResponse) -> None:
        if self.path is None:
            if self._buf:
                await response.write(bytes(self._buf))
            return
        with open(self.path, "rb") as f:
            while chunk := f.read(READ_CHUNK):
                await response.write(chunk)

    def discard(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Account:
    name: str
    password: str
    readonly: bool = False


class Accounts:
    """Who may use the warehouse: the user and password of ``clickhouse_url`` (all rights)
    and the optional read-only dashboard user. With neither, the warehouse is open."""

    def __init__(self, settings: Settings):
        self.by_name: dict[str, Account] = {}
        url = urlsplit(settings.clickhouse_url)
        if url.username:
            name = unquote(url.username)
            self.by_name[name] = Account(name, unquote(url.password or ""))
        if settings.clickhouse_readonly_user:
            secret = settings.clickhouse_readonly_password
            name = settings.clickhouse_readonly_user
            self.by_name[name] = Account(name, secret.get_secret_value() if secret else "", readonly=True)
        self.open = not self.by_name

    def authenticate(self, request: web.Request, opts: RequestOptions) -> Account:
        user, password = credentials(request, opts)
        if self.open:
            return Account(user or "default", "")
        account = self.by_name.get(user or "default")
        if account is None or not hmac.compare_digest(account.password.encode(), (password or "").encode()):
            raise ClickHouseError.make(
                "AUTHENTICATION_FAILED",
                f"{user or 'default'}: Authentication failed: password is incorrect, "
                "or there is no user with such name",
            )
        return account


def credentials(request: web.Request, opts: RequestOptions) -> tuple[str | None, str | None]:
    """User and password as ClickHouse takes them: headers, basic auth, or URL parameters."""
    if "X-ClickHouse-User" in request.headers:
        return request.headers["X-ClickHouse-User"], request.headers.get("X-ClickHouse-Key", "")
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("basic "):
        try:
            user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ClickHouseError.make("AUTHENTICATION_FAILED", f"Malformed basic authentication: {exc}") from exc
        return user, password
    return opts.user, opts.password


@dataclass
class Session:
    """A ``session_id``'s handle: its ``SET``s, ``USE`` and temporary tables."""

    key: tuple[str, str]
    handle: Handle
    timeout: float
    busy: bool = False
    expires: float = 0.0


class Warehouse:
    """The aiohttp application around the engine."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine = Engine(settings.home / "clickhouse")
        self.tmp_dir = settings.home / "tmp" / "warehouse"
        self.accounts = Accounts(settings)
        # Queries run on these threads (chdb releases the GIL), one handle each; the event
        # loop stays free for /ping and for reading and writing bodies.
        self.executor = ThreadPoolExecutor(
            max_workers=settings.warehouse_max_queries, thread_name_prefix="chdb"
        )
        # KILL QUERY and cancellations never wait behind busy query threads.
        self.control = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chdb-control")
        self.sessions: dict[tuple[str, str], Session] = {}
        self.running: dict[str, str] = {}  # request token -> query id
        self.server_name = "streamapp-warehouse"
        self._reaper: asyncio.Task | None = None

    async def start_engine(self) -> None:
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        await self._in(self.control, self.engine.open)
        self._reaper = asyncio.create_task(self._expire_sessions())
        logger.info("ClickHouse %s (chdb) open on %s", self.engine.version, self.engine.path)

    async def stop_engine(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for session in list(self.sessions.values()):
            await self._in(self.control, session.handle.close)
        self.sessions.clear()
        self.executor.shutdown(wait=True)
        await self._in(self.control, self.engine.close)
        self.control.shutdown(wait=True)
        logger.info("engine closed")

    async def _in(self, pool: ThreadPoolExecutor, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/ping", self.ping)
        app.router.add_route("HEAD", "/ping", self.ping)
        app.router.add_route("GET", "/replicas_status", self.ping)
        app.router.add_route("*", "/", self.query)
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        return app

    async def ping(self, request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n", content_type="text/plain")

    async def not_found(self, request: web.Request) -> web.Response:
        text = f"There is no handle {request.path}\n\nUse / or /ping for health checks.\n"
        return web.Response(status=404, text=text, content_type="text/plain")

    def _headers(self, query_id: str, fmt: str | None = None) -> dict[str, str]:
        headers = {
            "X-ClickHouse-Server-Display-Name": self.server_name,
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": self.engine.timezone,
        }
        if fmt:
            headers["X-ClickHouse-Format"] = fmt
            headers["Content-Type"] = content_type(fmt)
        else:
            headers["Content-Type"] = "text/plain; charset=UTF-8"
        return headers

    def error_response(self, err: ClickHouseError, query_id: str) -> web.Response:
        headers = self._headers(query_id)
        headers["X-ClickHouse-Exception-Code"] = str(err.code)
        headers["Content-Type"] = "text/plain; charset=UTF-8"
        return web.Response(status=err.http_status, body=err.body(self.engine.version), headers=headers)

    # --- sessions ------------------------------------------------------------------

    async def _session(self, opts: RequestOptions, account: Account) -> Session:
        timeout = DEFAULT_SESSION_TIMEOUT
        if opts.session_timeout is not None:
            try:
                timeout = float(opts.session_timeout)
            except ValueError:
                timeout = -1
            if not 0 <= timeout <= MAX_SESSION_TIMEOUT:
                raise ClickHouseError.make(
                    "INVALID_SESSION_TIMEOUT",
                    f"Invalid session timeout: '{opts.session_timeout}' (0 to {MAX_SESSION_TIMEOUT} seconds)",
                )
        key = (account.name, opts.session_id)
        session = self.sessions.get(key)
        if session is not None and session.expires and session.expires < time.monotonic() and not session.busy:
            await self._close_session(session)
            session = None
        if session is None:
            if opts.session_check:
                raise ClickHouseError.make("SESSION_NOT_FOUND", f"Session {opts.session_id} not found")
            handle = await self._in(self.control, self.engine.connect)
            session = self.sessions[key] = Session(key, handle, timeout)
        elif session.busy:
            raise ClickHouseError.make("SESSION_IS_LOCKED", f"Session {opts.session_id} is locked by a concurrent client")
        session.timeout = timeout if opts.session_timeout is not None else session.timeout
        session.busy = True
        return session

    async def _close_session(self, session: Session) -> None:
        if self.sessions.get(session.key) is session:
            del self.sessions[session.key]
        await self._in(self.control, session.handle.close)

    async def _expire_sessions(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for session in [s for s in self.sessions.values() if not s.busy and s.expires < now]:
                logger.info("session %s expired", session.key[1])
                await self._close_session(session)

    # --- requests ------------------------------------------------------------------

    async def query(self, request: web.Request) -> web.StreamResponse:
        query_id = request.query.get("query_id") or str(uuid.uuid4())
        spool = Spool(self.tmp_dir)
        data_file: Path | None = None
        try:
            if request.method == "GET" and not request.query.get("query") and not request.can_read_body:
                return web.Response(text="Ok.\n", content_type="text/plain")
            if request.method not in ("GET", "POST"):
                raise ClickHouseError.make("UNSUPPORTED_METHOD", f"HTTP method {request.method} is not supported")
            pairs = list(request.query.items())
            account = self.accounts.authenticate(request, parse_params(pairs))
            if request.content_type == "multipart/form-data":
                pairs += await self._read_form(request, spool)
            else:
                await self._read_body(request, spool)
            opts = parse_params(pairs)
            query_id = opts.query_id or query_id
            # planning may copy insert data to a file: off the event loop
            stmt, data_file = await asyncio.get_running_loop().run_in_executor(
                None, plan_statement, opts, spool, self.tmp_dir
            )
            return await self._run(request, opts, stmt, account, query_id)
        except ClickHouseError as err:
            if err.http_status >= 500:
                logger.warning("query %s failed: %s", query_id, err.text)
            return self.error_response(err, query_id)
        except Exception as exc:  # a bug or an OS error here must not look like a hang up
            logger.exception("query %s: unexpected error", query_id)
            err = ClickHouseError.make("STD_EXCEPTION", f"{type(exc).__name__}: {exc}")
            return self.error_response(err, query_id)
        finally:
            spool.discard()
            if data_file is not None:
                data_file.unlink(missing_ok=True)

    async def _run(
        self, request: web.Request, opts: RequestOptions, stmt: Statement, account: Account, query_id: str
    ) -> web.StreamResponse:
        """Run ``stmt`` on the request's session handle, or on a handle of its own."""
        session = await self._session(opts, account) if opts.session_id else None
        handle = session.handle if session else await self._in(self.control, self.engine.connect)
        token = uuid.uuid4().hex
        restore: list[str] = []
        try:
            restore = await self._in(self.executor, prepare, handle, stmt, account, session is not None)
            kill = kill_query(stmt.sql, dict(self.running))
            self.running[token] = query_id
            if kill is not None:
                return await self._kill(kill, stmt, query_id, handle)
            fmt = output_format(stmt.sql) or stmt.fmt
            if fmt == "Native" and first_keyword(stmt.sql) in STREAMED_KEYWORDS and (
                opts.client_protocol_version == 0 or opts.client_protocol_version >= DATETIME_TZ_REVISION
            ):
                stmt.native_types = await self._in(self.executor, result_types, handle, stmt)
            kind = stream_header_kind(fmt)
            if kind is not None and first_keyword(stmt.sql) in STREAMED_KEYWORDS:
                return await self._stream(request, handle, stmt, token, query_id, fmt, kind, opts.wait_end_of_query)
            return await self._whole(request, handle, stmt, token, query_id)
        finally:
            self.running.pop(token, None)
            if session is None:
                await self._in(self.control, handle.close)
            else:
                if restore and first_keyword(stmt.sql) not in ("SET", "USE"):
                    await self._in(self.control, _restore, handle, restore)
                session.busy = False
                session.expires = time.monotonic() + session.timeout

    async def _engine(self, request: web.Request, token: str, fn, *args):
        """``fn`` on a query thread; if the client goes away meanwhile, its query is killed."""
        future = asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        killed = False
        while True:
            done, _ = await asyncio.wait({future}, timeout=DISCONNECT_POLL_S)
            if done:
                return future.result()
            if not killed and _gone(request):
                killed = True
                logger.info("client of request %s went away: cancelling its query", self.running.get(token))
                await self._in(self.control, self.engine.kill, marker_condition(token))

    async def _whole(
        self, request: web.Request, handle: Handle, stmt: Statement, token: str, query_id: str
    ) -> web.Response:
        started = time.perf_counter_ns()
        result = await self._engine(request, token, handle.query, stmt.sql_bytes(token), stmt.fmt, stmt.params)
        body = result.bytes()
        if stmt.native_types:
            body = restore_native_timezones(body, stmt.native_types)
        rows, nbytes = result.rows_read(), result.bytes_read()
        written = (rows, nbytes) if stmt.is_insert else (0, 0)
        fmt = (output_format(stmt.sql) or stmt.fmt) if has_result_set(stmt.sql, body) else None
        headers = self._headers(query_id, fmt)
        headers["X-ClickHouse-Summary"] = summary_header(
            read_rows=rows,
            read_bytes=nbytes,
            written_rows=written[0],
            written_bytes=written[1],
            result_bytes=len(body),
            elapsed_ns=time.perf_counter_ns() - started,
        )
        return web.Response(body=body, headers=headers)

    async def _stream(
        self,
        request: web.Request,
        handle: Handle,
        stmt: Statement,
        token: str,
        query_id: str,
        fmt: str,
        kind: tuple[str, int],
        wait_end: bool,
    ) -> web.StreamResponse:
        """A result sent block by block: small results (and ``wait_end_of_query=1``) whole,
        with the summary and a proper error status; larger ones as they come, memory bounded."""
        started = time.perf_counter_ns()
        try:
            await self._engine(request, token, handle.send, stmt.sql_bytes(token), stmt.fmt, stmt.params)
        except ClickHouseError as err:
            if "Streaming query is not supported" not in err.text:
                raise
            return await self._whole(request, handle, stmt, token, query_id)
        buffered = Spool(self.tmp_dir)
        stats = [0, 0, 0]  # rows, bytes read, result bytes
        first = True
        last = False
        try:
            while not last and (wait_end or buffered.size < STREAM_FIRST_FLUSH):
                data, last = await self._block(request, handle, stmt, token, kind, first, stats)
                first = first and not data
                buffered.write(data)
            buffered.finish()
            headers = self._headers(query_id, fmt)
            headers["X-ClickHouse-Summary"] = summary_header(
                read_rows=stats[0],
                read_bytes=stats[1],
                written_rows=0,
                written_bytes=0,
                result_bytes=buffered.size,
                elapsed_ns=time.perf_counter_ns() - started,
            )
            if last and buffered.path is None:
                return web.Response(body=buffered.read_all(), headers=headers)
            tag = secrets.token_hex(8)
            headers["X-ClickHouse-Exception-Tag"] = tag
            response = web.StreamResponse(headers=headers)
            await response.prepare(request)
            try:
                await buffered.send(response)
                buffered.discard()
                while not last:
                    try:
                        data, last = await self._block(request, handle, stmt, token, kind, first, stats)
                    except ClickHouseError as err:
                        logger.warning("query %s failed while streaming: %s", query_id, err.text)
                        await response.write(exception_block(tag, err.body(self.engine.version).decode()))
                        break
                    first = first and not data
                    if data:
                        await response.write(data)
                await response.write_eof()
            except ConnectionError:  # the client went away: stop the query
                logger.info("client of query %s went away while streaming", query_id)
                await self._in(self.executor, handle.cancel)
            return response
        finally:
            buffered.discard()
            if not last:
                await self._in(self.executor, handle.cancel)

    async def _block(
        self,
        request: web.Request,
        handle: Handle,
        stmt: Statement,
        token: str,
        kind: tuple[str, int],
        first: bool,
        stats: list[int],
    ) -> tuple[bytes, bool]:
        data, rows, nbytes, last = await self._engine(request, token, handle.fetch)
        stats[0] += rows
        stats[1] += nbytes
        if data and not first and kind[0] != "plain":
            data = data[header_length(kind, data) :]
        if data and stmt.native_types:
            data = restore_native_timezones(data, stmt.native_types)
        stats[2] += len(data)
        return data, last

    async def _kill(self, kill: KillQuery, stmt: Statement, query_id: str, handle: Handle) -> web.Response:
        """``KILL QUERY`` on the control threads, so it never waits behind the queries it stops."""
        result = await self._in(self.control, handle.query, kill.sql, stmt.fmt, stmt.params)
        deadline = time.monotonic() + KILL_SYNC_WAIT_S
        while kill.sync and time.monotonic() < deadline:
            remaining = await self._in(self.control, handle.query, kill.waiting_sql, DEFAULT_FORMAT, stmt.params)
            if remaining.bytes().strip() == b"0":
                break
            await asyncio.sleep(0.05)
        headers = self._headers(query_id, output_format(stmt.sql) or stmt.fmt)
        return web.Response(body=result.bytes(), headers=headers)

    async def _read_body(self, request: web.Request, spool: Spool) -> None:
        decoder = make_decoder(request.headers.get("Content-Encoding"))
        try:
            async for chunk in request.content.iter_chunked(READ_CHUNK):
                spool.write(decoder.decompress(chunk))
            spool.write(decoder.flush())
        except ClickHouseError:
            raise
        except (OSError, ValueError) as exc:  # client went away, bad chunking, disk full
            raise ClickHouseError.make("CANNOT_READ_ALL_DATA", f"Cannot read the request body: {exc}") from exc
        finally:
            spool.finish()

    async def _read_form(self, request: web.Request, spool: Spool) -> list[tuple[str, str]]:
        """multipart/form-data: ``query`` and ``param_*`` fields (clickhouse-connect sends
        long bound parameters this way). External data tables are not supported."""
        pairs = []
        try:
            reader = await request.multipart()
            async for part in reader:
                name = part.name or ""
                if part.filename is not None:
                    raise ClickHouseError.make(
                        "NOT_IMPLEMENTED",
                        f"External data ('{name}') is not supported by the embedded warehouse; "
                        "load it into a table first",
                    )
                pairs.append((name, (await part.read(decode=True)).decode()))
        except ClickHouseError:
            raise
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise ClickHouseError.make("CANNOT_READ_ALL_DATA", f"Cannot read the multipart form: {exc}") from exc
        finally:
            spool.finish()
        return pairs


def plan_statement(opts: RequestOptions, spool: Spool, tmp_dir: Path) -> tuple[Statement, Path | None]:
    """The statement is ``query`` + newline + body, as ClickHouse reads it. An INSERT with
    inline data becomes ``INSERT … FROM INFILE`` over a file holding exactly that data."""
    prefix = (opts.query + "\n").encode("utf-8", "surrogateescape") if opts.query else b""
    head = prefix + spool.head(HEAD_BYTES)
    # latin-1 maps bytes 1:1 to characters, so offsets in the text are offsets in the stream.
    split = split_insert(head.decode("latin-1"))
    common = dict(
        fmt=opts.default_format or DEFAULT_FORMAT,
        params=opts.query_params,
        settings=opts.settings,
        database=opts.database,
    )
    if split is not None:
        target = _recode(split.target)
        settings = _recode(split.settings)
        split = InsertSplit(target, settings, split.format, split.data_start)
        if split.data_start == len(prefix) and spool.path is not None:
            # The usual clickhouse-connect insert: statement in the URL, data is the body.
            data_file, owned = spool.path, None
        else:
            fd, name = tempfile.mkstemp(prefix="insert-", dir=tmp_dir)
            data_file = owned = Path(name)
            with os.fdopen(fd, "wb") as out:
                if split.data_start < len(prefix):
                    out.write(prefix[split.data_start :])
                    spool.copy_from(0, out)
                else:
                    spool.copy_from(split.data_start - len(prefix), out)
        return Statement(sql=split.infile_sql(str(data_file)), is_insert=True, **common), owned
    if len(prefix) + spool.size > MAX_QUERY_BYTES:
        raise ClickHouseError.make(
            "QUERY_IS_TOO_LARGE",
            f"Query is {len(prefix) + spool.size} bytes, more than {MAX_QUERY_BYTES}; "
            "send large data as INSERT … FORMAT with the data in the body",
        )
    # Any bytes, as on a server: the engine gets them back unchanged (see Statement).
    sql = (prefix + spool.read_all()).decode("utf-8", "surrogateescape")
    if is_empty_statement(sql):
        raise ClickHouseError.make("SYNTAX_ERROR", "Empty query")
    return Statement(sql=sql, **common), None


def _recode(text: str) -> str:
    """Scanned text (latin-1, one character per byte) back to the request's own bytes."""
    return text.encode("latin-1").decode("utf-8", "surrogateescape")


# --- the process -----------------------------------------------------------------


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Open the engine, serve until SIGTERM/SIGINT (or ``stop``), then close the engine."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    warehouse = Warehouse(settings)
    host, port = settings.clickhouse_host_port
    if warehouse.accounts.open and not _loopback(host):
        raise RuntimeError(
            f"the warehouse would listen on {host} with no password: put a user and password in "
            "STREAMAPP_CLICKHOUSE_URL (http://user:password@host:port) or listen on 127.0.0.1"
        )
    await warehouse.start_engine()
    # Bodies are decoded by us (lz4 and zstd included), so aiohttp must not touch them;
    # long URLs carry INSERT statements and bound parameters.
    runner = web.AppRunner(
        warehouse.app(),
        auto_decompress=False,
        max_line_size=1 << 20,
        max_field_size=1 << 16,
        access_log=None,
        handle_signals=False,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        logger.info("warehouse serving ClickHouse HTTP on http://%s:%d", host, port)
        await stop.wait()
        logger.info("stopping")
    finally:
        await runner.cleanup()
        await warehouse.stop_engine()


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    try:
        asyncio.run(serve(settings))
    except (OSError, RuntimeError) as exc:
        logger.error("warehouse failed: %s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
