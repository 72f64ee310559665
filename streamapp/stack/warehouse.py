"""The local warehouse: embedded ClickHouse (chdb) behind the ClickHouse HTTP interface.

Run as ``python -m streamapp.stack.warehouse``. One chdb engine lives in this
process with its data in ``<home>/clickhouse``; it keeps running between
requests, so Kafka-engine tables and materialized views go on consuming while
nobody asks anything. clickhouse-connect, curl and Grafana talk to it as to a
ClickHouse server on ``clickhouse_url`` (default 127.0.0.1:8123).

Requests are parsed here (see :mod:`streamapp.stack.http_protocol`) and handed to
one engine thread, one at a time: chdb is not safe for concurrent queries in one
session. Per-request settings are applied with ``SET`` and put back afterwards;
``param_*`` values go to chdb's own parameter binding; insert data is decompressed
to a file and read with ``INSERT … FROM INFILE``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from streamapp.settings import Settings, get_settings
from streamapp.stack.http_protocol import (
    ClickHouseError,
    InsertSplit,
    RequestOptions,
    content_type,
    first_keyword,
    has_result_set,
    is_empty_statement,
    make_decoder,
    output_format,
    parse_params,
    quote_identifier,
    set_statement,
    split_insert,
    summary_header,
)

logger = logging.getLogger(__name__)

READ_CHUNK = 1 << 20
SPOOL_IN_MEMORY = 1 << 20  # bodies above this go to a temp file
HEAD_BYTES = 1 << 20  # how much of a body is scanned for an INSERT's data start
MAX_QUERY_BYTES = 64 << 20  # a statement sent as text (not insert data) may be this big
DEFAULT_FORMAT = "TabSeparated"


# --- the engine ----------------------------------------------------------------


@dataclass
class Statement:
    """What the engine runs for one request."""

    sql: str
    fmt: str
    params: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    database: str | None = None
    is_insert: bool = False


@dataclass
class Outcome:
    body: bytes
    read_rows: int
    read_bytes: int
    written_rows: int
    written_bytes: int
    elapsed_ns: int


class Engine:
    """The one chdb session of this process. Not thread-safe: call it from one thread."""

    def __init__(self, path: Path):
        self.path = path
        self._conn = None  # keep the wrapper: dropping it closes the native connection
        self._raw = None
        self.version = ""
        self.timezone = "UTC"
        self._startup_settings: dict[str, str] = {}

    def open(self) -> None:
        from chdb.state import sqlitelike  # imported here: loading chdb costs ~100 MB

        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlitelike.Connection(str(self.path))
        except Exception as exc:
            raise RuntimeError(
                f"cannot open the ClickHouse data directory {self.path}: {exc}. "
                "Is another warehouse running on it? Stop it first (streamapp stack down)."
            ) from exc
        self._raw = self._conn._conn
        version, tz = self._text("SELECT version(), timezone()").rstrip("\n").split("\t")
        self.version, self.timezone = version, tz
        # chdb changes a few settings at startup (implicit_select, storage_file_read_method…);
        # a request's settings are restored to these, others to DEFAULT.
        rows = self._text("SELECT name, value FROM system.settings WHERE changed FORMAT JSONEachRow")
        for line in rows.splitlines():
            row = json.loads(line)
            self._startup_settings[row["name"]] = row["value"]

    def close(self) -> None:
        conn, self._conn, self._raw = self._conn, None, None
        if conn is not None:
            conn.close()

    def _text(self, sql: str) -> str:
        return self._raw.query(sql, "TabSeparated", params={}).bytes().decode()

    def _run(self, sql: str, fmt: str = DEFAULT_FORMAT, params: dict[str, str] | None = None):
        try:
            return self._raw.query(sql, fmt, params=params or {})
        except RuntimeError as exc:
            raise ClickHouseError.from_engine(str(exc)) from None

    def execute(self, stmt: Statement) -> Outcome:
        """Run one statement with its request's settings and database, then restore both."""
        if self._raw is None:
            raise ClickHouseError.make("LOGICAL_ERROR", "The warehouse engine is shutting down")
        started = time.perf_counter_ns()
        changed_db = False
        applied: list[str] = []
        try:
            if stmt.database and stmt.database != "default":
                self._run(f"USE {quote_identifier(stmt.database)}")
                changed_db = True
            if stmt.settings:
                self._run(set_statement(stmt.settings))
                applied = list(stmt.settings)
            result = self._run(stmt.sql, stmt.fmt, stmt.params)
            body = result.bytes()
            rows, nbytes = result.rows_read(), result.bytes_read()
        finally:
            self._restore(applied, changed_db or first_keyword(stmt.sql) == "USE")
        elapsed = time.perf_counter_ns() - started
        if stmt.is_insert:
            return Outcome(body, rows, nbytes, rows, nbytes, elapsed)
        return Outcome(body, rows, nbytes, 0, 0, elapsed)

    def _restore(self, applied: list[str], database: bool) -> None:
        try:
            if applied:
                self._run(set_statement({name: self._startup_settings.get(name) for name in applied}))
            if database:
                self._run("USE default")
        except ClickHouseError:
            logger.exception("could not restore the engine's settings after a request")


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

    def discard(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class Warehouse:
    """The aiohttp application around the engine."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine = Engine(settings.home / "clickhouse")
        self.tmp_dir = settings.home / "tmp" / "warehouse"
        # One thread owns the engine: requests queue here, the event loop stays free.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chdb")
        self.server_name = "streamapp-warehouse"

    async def start_engine(self) -> None:
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        await self._in_engine(self.engine.open)
        logger.info("ClickHouse %s (chdb) open on %s", self.engine.version, self.engine.path)

    async def stop_engine(self) -> None:
        await self._in_engine(self.engine.close)
        self.executor.shutdown(wait=True)
        logger.info("engine closed")

    async def _in_engine(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

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
            outcome = await self._in_engine(self.engine.execute, stmt)
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
        fmt = (output_format(stmt.sql) or stmt.fmt) if has_result_set(stmt.sql, outcome.body) else None
        headers = self._headers(query_id, fmt)
        headers["X-ClickHouse-Summary"] = summary_header(
            read_rows=outcome.read_rows,
            read_bytes=outcome.read_bytes,
            written_rows=outcome.written_rows,
            written_bytes=outcome.written_bytes,
            result_bytes=len(outcome.body),
            elapsed_ns=outcome.elapsed_ns,
        )
        return web.Response(body=outcome.body, headers=headers)

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
    prefix = (opts.query + "\n").encode() if opts.query else b""
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
    raw = prefix + spool.read_all()
    try:
        sql = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClickHouseError.make("BAD_ARGUMENTS", f"The query is not valid UTF-8 ({exc})") from exc
    if "\x00" in sql:
        raise ClickHouseError.make("BAD_ARGUMENTS", "The query contains a NUL byte")
    if is_empty_statement(sql):
        raise ClickHouseError.make("SYNTAX_ERROR", "Empty query")
    return Statement(sql=sql, **common), None


def _recode(text: str) -> str:
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClickHouseError.make("BAD_ARGUMENTS", f"The INSERT statement is not valid UTF-8 ({exc})") from exc


# --- the process -----------------------------------------------------------------


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Open the engine, serve until SIGTERM/SIGINT (or ``stop``), then close the engine."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    warehouse = Warehouse(settings)
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
    host, port = settings.clickhouse_host_port
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        logger.info("warehouse serving ClickHouse HTTP on http://%s:%d", host, port)
        await stop.wait()
        logger.info("stopping")
    finally:
        await runner.cleanup()
        await warehouse.stop_engine()


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
