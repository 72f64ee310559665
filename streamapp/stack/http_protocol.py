"""The ClickHouse HTTP interface, as far as the embedded warehouse needs it: pure parts.

Request parameters, body decompression, the split of an ``INSERT`` into its
statement and its data, the output format, and errors in ClickHouse's own shape
(``Code: 60. DB::Exception: … (UNKNOWN_TABLE) (version …)``, a non-200 status and
``X-ClickHouse-Exception-Code``). No engine, no sockets: see
:mod:`streamapp.stack.warehouse` for the server that uses these.

What clickhouse-connect sends, for example::

    POST /?query=INSERT+INTO+trades+(a,+b)+FORMAT+Native&database=default
         &session_id=…&query_id=…&date_time_input_format=best_effort
    Content-Encoding: lz4            (lz4 frames, one per block, chunked)

    POST /?param_sym=BTC%2FUSDT&enable_http_compression=1&wait_end_of_query=1
    SELECT count() FROM trades WHERE symbol = {sym:String}
     FORMAT Native
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import lz4.frame
import zstandard

try:  # optional, as in ClickHouse clients
    import brotli  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    brotli = None


# --- errors ------------------------------------------------------------------

# The codes this server raises itself; the engine's own errors carry their code.
ERROR_CODES: dict[str, int] = {
    "UNSUPPORTED_METHOD": 1,
    "CANNOT_READ_ALL_DATA": 33,
    "BAD_ARGUMENTS": 36,
    "NOT_IMPLEMENTED": 48,
    "LOGICAL_ERROR": 49,
    "SYNTAX_ERROR": 62,
    "UNKNOWN_FORMAT": 73,
    "UNKNOWN_COMPRESSION_METHOD": 89,
    "UNKNOWN_SETTING": 115,
    "QUERY_IS_TOO_LARGE": 229,
    "CANNOT_DECOMPRESS": 271,
    "TIMEOUT_EXCEEDED": 159,
    "SESSION_NOT_FOUND": 372,
    "SESSION_IS_LOCKED": 373,
    "INVALID_SESSION_TIMEOUT": 374,
    "QUERY_WAS_CANCELLED": 394,
    "UNKNOWN_QUERY_PARAMETER": 456,
    "BAD_QUERY_PARAMETER": 457,
    "AUTHENTICATION_FAILED": 516,
    "STD_EXCEPTION": 1001,
}

# ClickHouse's HTTPHandler maps exception codes to statuses like this
# (exceptionCodeToHTTPStatus); everything else is 500.
_STATUS_BY_NAME: dict[str, int] = {
    "REQUIRED_PASSWORD": 401,
    **dict.fromkeys(("UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "SET_NON_GRANTED_ROLE"), 403),
    **dict.fromkeys(
        (
            "BAD_ARGUMENTS",
            "CANNOT_COMPILE_REGEXP",
            "CANNOT_PARSE_TEXT",
            "CANNOT_PARSE_ESCAPE_SEQUENCE",
            "CANNOT_PARSE_QUOTED_STRING",
            "CANNOT_PARSE_DATE",
            "CANNOT_PARSE_DATETIME",
            "CANNOT_PARSE_NUMBER",
            "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING",
            "CANNOT_PARSE_IPV4",
            "CANNOT_PARSE_IPV6",
            "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
            "CANNOT_PARSE_UUID",
            "CANNOT_PARSE_BOOL",
            "CANNOT_READ_ARRAY_FROM_TEXT",
            "DUPLICATE_COLUMN",
            "ILLEGAL_COLUMN",
            "UNKNOWN_ELEMENT_IN_AST",
            "UNKNOWN_TYPE_OF_AST_NODE",
            "TOO_DEEP_AST",
            "TOO_BIG_AST",
            "UNEXPECTED_AST_STRUCTURE",
            "SYNTAX_ERROR",
            "INCORRECT_DATA",
            "TYPE_MISMATCH",
            "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
            "UNKNOWN_QUERY_PARAMETER",
            "BAD_QUERY_PARAMETER",
            "CANNOT_DECOMPRESS",
            "UNKNOWN_COMPRESSION_METHOD",
            "CANNOT_READ_ALL_DATA",
        ),
        400,
    ),
    **dict.fromkeys(
        (
            "UNKNOWN_TABLE",
            "UNKNOWN_FUNCTION",
            "UNKNOWN_IDENTIFIER",
            "UNKNOWN_TYPE",
            "UNKNOWN_STORAGE",
            "UNKNOWN_DATABASE",
            "UNKNOWN_SETTING",
            "UNKNOWN_DIRECTION_OF_SORTING",
            "UNKNOWN_AGGREGATE_FUNCTION",
            "UNKNOWN_FORMAT",
            "UNKNOWN_DATABASE_ENGINE",
            "UNKNOWN_TYPE_OF_QUERY",
            "UNKNOWN_ROLE",
        ),
        404,
    ),
    "TIMEOUT_EXCEEDED": 408,
    "HTTP_LENGTH_REQUIRED": 411,
    "QUERY_IS_TOO_LARGE": 413,
    "QUERY_WAS_CANCELLED_BY_CLIENT": 499,
    "NOT_IMPLEMENTED": 501,
    "UNSUPPORTED_METHOD": 501,
}

_CODE_PREFIX = re.compile(r"^Code: (\d+)\. DB::Exception: ")
_NAME_SUFFIX = re.compile(r"\(([A-Z][A-Z0-9_]+)\)\s*$")
# chdb wraps errors from inside the pipeline again: "Code: 73. DB::Exception: Code: 73.
# DB::Exception: Unknown format X. (UNKNOWN_FORMAT) (version 26.1.2.1). (UNKNOWN_FORMAT)".
_INNER_TRAILER = re.compile(r"\s*\(version [^()]*(?:\([^()]*\))?[^()]*\)\.\s*\([A-Z][A-Z0-9_]+\)")
_VERSION_TRAILER = re.compile(r"\s*\(version [^()]*(?:\([^()]*\))?[^()]*\)\s*$")


class ClickHouseError(Exception):
    """An error answered the way ClickHouse answers it: code, name and message."""

    def __init__(self, code: int, name: str, text: str):
        super().__init__(text)
        self.code = code
        self.name = name
        self.text = text  # "Code: N. DB::Exception: message. (NAME)"

    @classmethod
    def make(cls, name: str, message: str) -> ClickHouseError:
        """An error raised by this server, e.g. ``make("CANNOT_DECOMPRESS", "…")``."""
        code = ERROR_CODES[name]
        message = message.rstrip()
        if not message.endswith("."):
            message += "."
        return cls(code, name, f"Code: {code}. DB::Exception: {message} ({name})")

    @classmethod
    def from_engine(cls, text: str) -> ClickHouseError:
        """An engine exception message, tidied of chdb's repeated wrapping."""
        text = normalize_engine_message(text)
        code_match = _CODE_PREFIX.match(text)
        name_match = _NAME_SUFFIX.search(text)
        if not code_match:
            text = f"Code: 1001. DB::Exception: {text} (STD_EXCEPTION)"
            return cls(1001, "STD_EXCEPTION", text)
        name = name_match.group(1) if name_match else "UNKNOWN_EXCEPTION"
        return cls(int(code_match.group(1)), name, text)

    @property
    def http_status(self) -> int:
        return http_status_for(self.name)

    def body(self, version: str) -> bytes:
        """The response body: the message and the server version, one line."""
        return f"{self.text} (version {version})\n".encode()


def normalize_engine_message(text: str) -> str:
    """Collapse chdb's nested ``Code: N. DB::Exception: Code: N. …`` into one message."""
    text = text.strip()
    text = _INNER_TRAILER.sub("", text)
    text = _VERSION_TRAILER.sub("", text)
    while True:
        first = _CODE_PREFIX.match(text)
        if not first:
            return text
        rest = text[first.end() :]
        if not rest.startswith(first.group(0)):
            return text
        text = rest


def http_status_for(name: str) -> int:
    return _STATUS_BY_NAME.get(name, 500)


# --- request parameters ------------------------------------------------------

# Parameters that steer the HTTP exchange, not the engine (credentials are checked by
# the server, see :mod:`streamapp.stack.warehouse`).
TRANSPORT_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "query_id",
        "session_id",
        "session_timeout",
        "session_check",
        "compress",
        "decompress",
        "enable_http_compression",
        "wait_end_of_query",
        "buffer_size",
        "client_protocol_version",
        "quota_key",
        "user",
        "password",
        "role",
        "stacktrace",
        "add_http_cors_header",
        "send_progress_in_http_headers",
        "cancel_http_readonly_queries_on_client_close",
        "max_query_size_http",
    }
)
_TRANSPORT_PREFIXES = ("http_",)


@dataclass
class RequestOptions:
    """The parameters of one request, sorted by what they are for."""

    query: str | None = None
    database: str | None = None
    default_format: str | None = None
    query_id: str | None = None
    session_id: str | None = None
    session_timeout: str | None = None
    session_check: bool = False
    wait_end_of_query: bool = False
    client_protocol_version: int = 0
    user: str | None = None
    password: str | None = None
    settings: dict[str, str] = field(default_factory=dict)
    query_params: dict[str, str] = field(default_factory=dict)


def parse_params(pairs: Iterable[tuple[str, str]]) -> RequestOptions:
    """Sort URL (or form) parameters into query, transport options, settings and ``param_*``.

    >>> opts = parse_params([("query", "SELECT {x:UInt8}"), ("param_x", "1"), ("max_threads", "2")])
    >>> opts.query, opts.settings, opts.query_params
    ('SELECT {x:UInt8}', {'max_threads': '2'}, {'x': '1'})
    """
    opts = RequestOptions()
    for name, value in pairs:
        if name.startswith("param_"):
            if not name[len("param_") :]:
                raise ClickHouseError.make("BAD_QUERY_PARAMETER", "Empty query parameter name 'param_'")
            opts.query_params[name[len("param_") :]] = value
        elif name == "query":
            opts.query = value if opts.query is None else opts.query + value
        elif name == "database":
            opts.database = value or None
        elif name == "default_format":
            opts.default_format = value or None
        elif name == "query_id":
            opts.query_id = value or None
        elif name == "session_id":
            opts.session_id = value or None
        elif name == "session_timeout":
            opts.session_timeout = value or None
        elif name == "session_check":
            opts.session_check = value not in ("", "0")
        elif name == "wait_end_of_query":
            opts.wait_end_of_query = value not in ("", "0")
        elif name == "client_protocol_version":
            if not value.isdigit():
                raise ClickHouseError.make("BAD_ARGUMENTS", f"client_protocol_version '{value}' is not a number")
            opts.client_protocol_version = int(value)
        elif name == "user":
            opts.user = value
        elif name == "password":
            opts.password = value
        elif name in TRANSPORT_PARAMS or name.startswith(_TRANSPORT_PREFIXES):
            continue
        else:
            if not _SETTING_NAME.fullmatch(name):
                raise ClickHouseError.make("UNKNOWN_SETTING", f"Unknown setting '{name}'")
            opts.settings[name] = value
    return opts


_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def quote_string(value: str) -> str:
    """A ClickHouse string literal: ``it's`` -> ``'it\\'s'``."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def quote_identifier(name: str) -> str:
    escaped = name.replace("\\", "\\\\").replace("`", "\\`")
    return f"`{escaped}`"


def set_statement(settings: dict[str, str | None]) -> str:
    """``SET a = 'v', b = DEFAULT``: values are passed as strings, as HTTP parameters are;
    ``None`` restores the default."""
    parts = []
    for name, value in settings.items():
        if not _SETTING_NAME.fullmatch(name):
            raise ClickHouseError.make("UNKNOWN_SETTING", f"Unknown setting '{name}'")
        parts.append(f"{name} = {'DEFAULT' if value is None else quote_string(value)}")
    return "SET " + ", ".join(parts)


# --- body decompression ------------------------------------------------------


class Decoder:
    """Streaming decoder of one ``Content-Encoding``; concatenated frames are fine."""

    def decompress(self, chunk: bytes) -> bytes:
        return chunk

    def flush(self) -> bytes:
        return b""


class _FramedDecoder(Decoder):
    """Decoders whose stream may hold several frames one after another (lz4, zstd, gzip)."""

    name = ""

    def __init__(self):
        self._dec = None
        self._pending = False  # inside a frame that has not ended

    def _new(self):
        raise NotImplementedError

    def _feed(self, dec, data: bytes) -> tuple[bytes, bool, bytes]:
        """Feed data to one frame decoder: (output, frame ended, bytes after the frame).

        lz4's, zstd's and zlib's decompressors all expose ``decompress``, ``eof`` and ``unused_data``.
        """
        out = dec.decompress(data)
        if dec.eof:
            return out, True, dec.unused_data
        return out, False, b""

    def decompress(self, chunk: bytes) -> bytes:
        out = []
        data = chunk
        try:
            while data:
                if self._dec is None:
                    self._dec = self._new()
                produced, ended, rest = self._feed(self._dec, data)
                out.append(produced)
                self._pending = not ended
                if ended:
                    self._dec = None
                data = rest
        except ClickHouseError:
            raise
        except Exception as exc:  # each library has its own error type
            raise ClickHouseError.make(
                "CANNOT_DECOMPRESS", f"Cannot decompress the request body as {self.name}: {exc}"
            ) from exc
        return b"".join(out)

    def flush(self) -> bytes:
        if self._pending:
            raise ClickHouseError.make(
                "CANNOT_DECOMPRESS", f"Cannot decompress the request body as {self.name}: the stream is truncated"
            )
        return b""


class _Lz4Decoder(_FramedDecoder):
    name = "lz4"

    def _new(self):
        return lz4.frame.LZ4FrameDecompressor()


class _ZstdDecoder(_FramedDecoder):
    name = "zstd"

    def _new(self):
        return zstandard.ZstdDecompressor().decompressobj()


class _ZlibDecoder(_FramedDecoder):
    def __init__(self, name: str, wbits: int):
        super().__init__()
        self.name = name
        self._wbits = wbits

    def _new(self):
        return zlib.decompressobj(self._wbits)


class _BrotliDecoder(Decoder):
    def __init__(self):
        self._dec = brotli.Decompressor()

    def decompress(self, chunk: bytes) -> bytes:
        try:
            return self._dec.process(chunk)
        except Exception as exc:
            raise ClickHouseError.make("CANNOT_DECOMPRESS", f"Cannot decompress the request body as br: {exc}") from exc

    def flush(self) -> bytes:
        if not self._dec.is_finished():
            raise ClickHouseError.make("CANNOT_DECOMPRESS", "Cannot decompress the request body as br: truncated")
        return b""


def make_decoder(content_encoding: str | None) -> Decoder:
    """The decoder for a request's ``Content-Encoding`` (none, lz4, zstd, gzip, deflate, br)."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity", "none"):
        return Decoder()
    if encoding == "lz4":
        return _Lz4Decoder()
    if encoding == "zstd":
        return _ZstdDecoder()
    if encoding in ("gzip", "x-gzip"):
        return _ZlibDecoder("gzip", 16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return _ZlibDecoder("deflate", zlib.MAX_WBITS)
    if encoding == "br" and brotli is not None:
        return _BrotliDecoder()
    raise ClickHouseError.make(
        "UNKNOWN_COMPRESSION_METHOD",
        f"Unknown Content-Encoding '{content_encoding}': use lz4, zstd, gzip, deflate"
        + (", br" if brotli is not None else "")
        + " or none",
    )


def decompress_all(content_encoding: str | None, chunks: Iterable[bytes]) -> bytes:
    """Decode a whole body (for tests and small bodies)."""
    dec = make_decoder(content_encoding)
    out = [dec.decompress(chunk) for chunk in chunks]
    out.append(dec.flush())
    return b"".join(out)


# --- SQL scanning ------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # word, string, ident, number, punct, open, close
    text: str
    start: int
    end: int
    depth: int  # bracket depth at the token

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words


_WS = " \t\n\r\f\v"


def tokens(sql: str) -> Iterator[Token]:
    """Tokens of ClickHouse SQL, skipping whitespace and comments; enough to find
    top-level keywords. An unterminated string or comment ends the scan."""
    i, n, depth = 0, len(sql), 0
    while i < n:
        c = sql[i]
        if c in _WS:
            i += 1
        elif sql.startswith("--", i) or c == "#":
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            j, level = i + 2, 1
            while j < n and level:
                if sql.startswith("/*", j):
                    level, j = level + 1, j + 2
                elif sql.startswith("*/", j):
                    level, j = level - 1, j + 2
                else:
                    j += 1
            if level:
                return
            i = j
        elif c in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                elif sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # doubled quote
                        j += 2
                    else:
                        break
                else:
                    j += 1
            if j >= n:
                return
            kind = "string" if c == "'" else "ident"
            yield Token(kind, sql[i : j + 1], i, j + 1, depth)
            i = j + 1
        elif c.isalpha() or c == "_":
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] in "_$"):
                j += 1
            yield Token("word", sql[i:j], i, j, depth)
            i = j
        elif c.isdigit():
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] in "._"):
                j += 1
            yield Token("number", sql[i:j], i, j, depth)
            i = j
        elif c in "([{":
            yield Token("open", c, i, i + 1, depth)
            depth += 1
            i += 1
        elif c in ")]}":
            depth = max(0, depth - 1)
            yield Token("close", c, i, i + 1, depth)
            i += 1
        else:
            yield Token("punct", c, i, i + 1, depth)
            i += 1


def first_keyword(sql: str) -> str:
    """The statement's first word, upper case (``''`` for an empty statement)."""
    for tok in tokens(sql):
        if tok.kind == "open":
            continue  # (SELECT …)
        return tok.text.upper() if tok.kind == "word" else ""
    return ""


def is_empty_statement(sql: str) -> bool:
    return all(tok.kind == "punct" and tok.text == ";" for tok in tokens(sql))


@dataclass(frozen=True)
class InsertSplit:
    """An ``INSERT`` whose data follows the statement (``FORMAT X`` or ``VALUES``)."""

    target: str  # "INSERT INTO db.t (a, b)"
    settings: str  # "SETTINGS k = v" or ""
    format: str  # "Native", "Values", …
    data_start: int  # offset of the first data character in the scanned text

    def infile_sql(self, path: str) -> str:
        """The same insert reading its data from a file (``FROM INFILE`` must precede
        ``SETTINGS`` and ``FORMAT`` in ClickHouse 26.1)."""
        # One clause per line: a "-- comment" at the end of the target stays harmless.
        parts = [self.target, f"FROM INFILE {quote_string(path)}"]
        if self.settings:
            parts.append(self.settings)
        parts.append(f"FORMAT {self.format}")
        return "\n".join(parts)


def split_insert(sql: str) -> InsertSplit | None:
    """Find where an ``INSERT``'s inline data begins, or ``None`` if the statement has none
    (not an INSERT, ``INSERT … SELECT``, ``INSERT … FROM INFILE``).

    >>> split_insert("INSERT INTO t FORMAT CSV\\n1,2\\n")
    InsertSplit(target='INSERT INTO t', settings='', format='CSV', data_start=25)

    Data begins after the format name and the blanks and one line end that follow it,
    as in ClickHouse; after ``VALUES`` it begins at once (the Values format skips blanks).
    """
    toks = tokens(sql)
    first = next(toks, None)
    if first is None or not first.is_word("INSERT"):
        return None
    settings_start: int | None = None
    for tok in toks:
        if tok.depth:
            continue
        if tok.is_word("SELECT", "WITH", "INFILE"):
            return None
        if tok.is_word("SETTINGS") and settings_start is None:
            settings_start = tok.start
        elif tok.is_word("VALUES"):
            target_end = settings_start if settings_start is not None else tok.start
            settings = sql[settings_start : tok.start].strip() if settings_start is not None else ""
            return InsertSplit(sql[first.start : target_end].strip(), settings, "Values", tok.end)
        elif tok.is_word("FORMAT"):
            name = next(toks, None)
            if name is None or name.kind not in ("word", "ident"):
                return None
            fmt = name.text.strip("`\"") if name.kind == "ident" else name.text
            target_end = settings_start if settings_start is not None else tok.start
            settings = sql[settings_start : tok.start].strip() if settings_start is not None else ""
            return InsertSplit(sql[first.start : target_end].strip(), settings, fmt, _data_start(sql, name.end))
    return None


def _data_start(sql: str, pos: int) -> int:
    n = len(sql)
    while pos < n and sql[pos] in " \t\f":
        pos += 1
    if pos < n and sql[pos] == "\r":
        pos += 1
    if pos < n and sql[pos] == "\n":
        pos += 1
    return pos


# Statements that answer with a result set (so with X-ClickHouse-Format, even when
# it has no rows); DDL, INSERT, SET, USE… answer with nothing.
_RESULT_KEYWORDS = frozenset("SELECT WITH SHOW DESCRIBE DESC EXISTS EXPLAIN CHECK KILL VALUES".split())
_NO_RESULT_KEYWORDS = frozenset(
    """INSERT CREATE DROP ALTER ATTACH DETACH RENAME TRUNCATE OPTIMIZE USE SET SYSTEM GRANT REVOKE
    DELETE UPDATE EXCHANGE UNDROP BEGIN COMMIT ROLLBACK""".split()
)


def has_result_set(sql: str, body: bytes) -> bool:
    """Whether a statement answered with a result set (an empty one included)."""
    if body:
        return True
    word = first_keyword(sql)
    return word not in _NO_RESULT_KEYWORDS and (word in _RESULT_KEYWORDS or output_format(sql) is not None)


def output_format(sql: str) -> str | None:
    """The format a query names in its own ``FORMAT`` clause (the last top-level one)."""
    found = None
    toks = tokens(sql)
    for tok in toks:
        if tok.depth == 0 and tok.is_word("FORMAT"):
            name = next(toks, None)
            if name is not None and name.kind in ("word", "ident"):
                found = name.text.strip("`\"")
    return found


# --- responses -----------------------------------------------------------------

_CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8; header=absent",
    "CSVWithNames": "text/csv; charset=UTF-8; header=present",
    "JSON": "application/json; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
    "JSONCompactEachRow": "application/x-ndjson; charset=UTF-8",
    "XML": "application/xml; charset=UTF-8",
}
_BINARY_FORMATS = ("Native", "RowBinary", "Arrow", "ArrowStream", "Parquet", "ORC", "Avro", "Protobuf", "MsgPack")


def content_type(fmt: str) -> str:
    """The Content-Type ClickHouse answers a format with."""
    if fmt in _CONTENT_TYPES:
        return _CONTENT_TYPES[fmt]
    if fmt.startswith("TabSeparated") or fmt.startswith("TSV"):
        return _CONTENT_TYPES["TSV"]
    if fmt.startswith("JSON"):
        return "application/json; charset=UTF-8"
    if fmt.startswith(_BINARY_FORMATS):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"


def summary_header(
    *, read_rows: int, read_bytes: int, written_rows: int, written_bytes: int, result_bytes: int, elapsed_ns: int
) -> str:
    """``X-ClickHouse-Summary``: ClickHouse sends every number as a string."""
    summary = {
        "read_rows": read_rows,
        "read_bytes": read_bytes,
        "written_rows": written_rows,
        "written_bytes": written_bytes,
        "total_rows_to_read": read_rows,
        "result_rows": 0,
        "result_bytes": result_bytes,
        "elapsed_ns": elapsed_ns,
    }
    return json.dumps({k: str(v) for k, v in summary.items()}, separators=(",", ":"))


# --- running queries: markers, KILL QUERY, streamed errors -------------------------

MARKER_PREFIX = "streamapp-request:"


def marker_comment(token: str) -> str:
    """The comment put before each statement the engine runs, so that the engine's
    ``system.processes`` row of a request can be found (chdb picks its own query ids)."""
    return f"/* {MARKER_PREFIX}{token} */\n"


def marker_condition(token: str) -> str:
    """A condition on ``system.processes`` matching the request with ``token``. The marker is
    split in two literals, so the statement holding the condition never matches itself."""
    return f"position(query, concat({quote_string(MARKER_PREFIX)}, {quote_string(token)})) > 0"


@dataclass(frozen=True)
class KillQuery:
    """``KILL QUERY WHERE cond [SYNC|ASYNC|TEST] [FORMAT f]`` as the engine must run it."""

    sql: str  # the engine's statement (ASYNC or TEST)
    waiting_sql: str  # how many of the matched queries still run
    sync: bool


def kill_query(sql: str, running: dict[str, str]) -> KillQuery | None:
    """Rewrite ``KILL QUERY`` so that its condition sees our query ids (``running`` maps
    request tokens to the query ids clients know), or ``None`` if ``sql`` is no KILL QUERY.

    SYNC becomes ASYNC plus a wait by the caller: the embedded engine's SYNC never returns.
    """
    toks = [t for t in tokens(sql)]
    if len(toks) < 2 or not toks[0].is_word("KILL") or not toks[1].is_word("QUERY"):
        return None
    where = next((t for t in toks if t.depth == 0 and t.is_word("WHERE")), None)
    if where is None:
        raise ClickHouseError.make("SYNTAX_ERROR", "KILL QUERY needs a WHERE clause")
    end, mode, fmt = len(sql), "ASYNC", ""
    tail = [t for t in toks if t.depth == 0 and t.start > where.start]
    for i, tok in enumerate(tail):
        if tok.is_word("FORMAT") and i + 1 < len(tail):
            fmt = f" FORMAT {tail[i + 1].text}"
            end = min(end, tok.start)
        elif tok.is_word("SYNC", "ASYNC", "TEST") and (i + 1 == len(tail) or tail[i + 1].is_word("FORMAT")):
            mode = tok.text.upper()
            end = min(end, tok.start)
    condition = sql[where.end : end].strip().rstrip(";")
    mapping = "query_id"
    if running:
        branches = ", ".join(f"{marker_condition(tok)}, {quote_string(qid)}" for tok, qid in running.items())
        mapping = f"multiIf({branches}, query_id)"
    matched = (
        f"SELECT engine_query_id FROM (SELECT * REPLACE ({mapping} AS query_id) FROM "
        f"(SELECT *, query_id AS engine_query_id FROM system.processes)) WHERE ({condition}) "
        "AND engine_query_id != queryID()"
    )
    engine_mode = "TEST" if mode == "TEST" else "ASYNC"
    return KillQuery(
        sql=f"KILL QUERY WHERE query_id IN ({matched}) {engine_mode}{fmt}",
        waiting_sql=f"SELECT count() FROM ({matched})",
        sync=mode == "SYNC",
    )


def exception_block(tag: str, message: str) -> bytes:
    """An error met after the first bytes of a result were sent, as ClickHouse (25.11+) writes
    it into the body; the response's ``X-ClickHouse-Exception-Tag`` header names the tag."""
    text = message.rstrip("\n")
    return f"__exception__\r\n{tag}\r\n{text}\n{len(text.encode())} {tag}\r\n__exception__\r\n".encode()


# Formats whose output for a stream of blocks is the concatenation of each block's output:
# a result in these is sent block by block. Formats with a header (…WithNames…) are sent
# with the header of the first block only; the others (JSON, XML, Pretty, Arrow, Parquet…)
# wrap the whole result and are sent when it is complete.
_CONCATENATING = frozenset(
    """Native TabSeparated TSV TabSeparatedRaw TSVRaw CSV JSONEachRow JSONStringsEachRow JSONCompactEachRow
    JSONCompactStringsEachRow JSONLines NDJSON RowBinary LineAsString Raw""".split()
)
_HEADER_LINES = {
    "WithNames": 1,
    "WithNamesAndTypes": 2,
}


def stream_header_kind(fmt: str) -> tuple[str, int] | None:
    """How a streamed format's blocks are joined: ``("plain", 0)``, ``("lines", n)`` (drop
    ``n`` header lines from every block but the first), ``("rowbinary", n)`` (drop the
    RowBinary header of ``n`` string lists), or ``None`` (not streamed)."""
    if fmt in _CONCATENATING:
        return ("plain", 0)
    for suffix, count in sorted(_HEADER_LINES.items(), key=lambda kv: -len(kv[0])):
        if fmt.endswith(suffix):
            base = fmt[: -len(suffix)]
            if base in ("TabSeparated", "TSV", "TabSeparatedRaw", "TSVRaw", "JSONCompactEachRow",
                        "JSONCompactStringsEachRow"):
                return ("lines", count)
            if base == "RowBinary":
                return ("rowbinary", count)
            return None
    return None


def header_length(kind: tuple[str, int], block: bytes) -> int:
    """The length of the header at the start of ``block`` (see :func:`stream_header_kind`)."""
    style, count = kind
    if style == "lines":
        pos = 0
        for _ in range(count):
            nl = block.find(b"\n", pos)
            if nl < 0:
                return len(block)
            pos = nl + 1
        return pos
    if style == "rowbinary":
        pos = 0
        ncols, pos = _read_varint(block, pos)
        for _ in range(ncols * count):
            size, pos = _read_varint(block, pos)
            pos += size
        return pos
    return 0


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


# --- Native results: DateTime time zones -------------------------------------------

# The embedded engine writes a top-level DateTime('Europe/Paris') column into Native as
# "DateTime", as a server does for clients older than this protocol version; a server
# keeps the zone for newer clients and for those that send no version.
DATETIME_TZ_REVISION = 54337

_FIXED_SIZES = {
    "UInt8": 1, "Int8": 1, "Bool": 1, "Enum8": 1, "UInt16": 2, "Int16": 2, "Date": 2, "Enum16": 2,
    "UInt32": 4, "Int32": 4, "Float32": 4, "Date32": 4, "DateTime": 4, "IPv4": 4, "Decimal32": 4,
    "UInt64": 8, "Int64": 8, "Float64": 8, "DateTime64": 8, "Decimal64": 8, "Time": 4, "Time64": 8,
    "UInt128": 16, "Int128": 16, "UUID": 16, "IPv6": 16, "Decimal128": 16, "UInt256": 32, "Int256": 32,
    "Decimal256": 32, "BFloat16": 2,
}


class _Unsupported(Exception):
    """A column type whose Native data this scanner cannot skip."""


def _split_args(args: str) -> list[str]:
    out, depth, start, quote = [], 0, 0, False
    for i, c in enumerate(args):
        if c == "'" and (i == 0 or args[i - 1] != "\\"):
            quote = not quote
        elif not quote and c == "(":
            depth += 1
        elif not quote and c == ")":
            depth -= 1
        elif not quote and c == "," and depth == 0:
            out.append(args[start:i].strip())
            start = i + 1
    out.append(args[start:].strip())
    return out


def _type_parts(type_name: str) -> tuple[str, list[str]]:
    if "(" not in type_name:
        return type_name, []
    base, _, rest = type_name.partition("(")
    return base, _split_args(rest[: rest.rindex(")")])


def _decimal_size(args: list[str]) -> int:
    precision = int(args[0])
    return 4 if precision <= 9 else 8 if precision <= 18 else 16 if precision <= 38 else 32


def _skip(data: bytes, pos: int, type_name: str, rows: int) -> int:
    """The position after ``rows`` values of ``type_name`` in Native data at ``pos``."""
    base, args = _type_parts(type_name)
    if base == "Decimal":
        return pos + _decimal_size(args) * rows
    if base == "FixedString":
        return pos + int(args[0]) * rows
    if base in _FIXED_SIZES:
        return pos + _FIXED_SIZES[base] * rows
    if base == "String":
        for _ in range(rows):
            size, pos = _read_varint(data, pos)
            pos += size
        return pos
    if base == "Nullable":
        return _skip(data, pos + rows, args[0], rows)
    if base in ("Array", "Map"):
        total = int.from_bytes(data[pos + 8 * (rows - 1) : pos + 8 * rows], "little") if rows else 0
        pos += 8 * rows
        if base == "Map":
            return _skip(data, pos, f"Tuple({args[0]}, {args[1]})", total)
        return _skip(data, pos, args[0], total)
    if base == "LowCardinality":
        pos += 8  # the keys' serialization version
        if rows == 0:
            return pos
        flags = int.from_bytes(data[pos : pos + 8], "little")
        pos += 8
        width = (1, 2, 4, 8)[flags & 0xFF]
        if flags & (1 << 9):  # the block carries its dictionary
            keys = int.from_bytes(data[pos : pos + 8], "little")
            inner_base, inner_args = _type_parts(args[0])
            pos = _skip(data, pos + 8, inner_args[0] if inner_base == "Nullable" else args[0], keys)
        count = int.from_bytes(data[pos : pos + 8], "little")
        return pos + 8 + width * count
    if base == "Tuple":
        for arg in args:
            name, _, typ = arg.partition(" ")
            element = typ if typ and not name.startswith(("Array(", "Nullable(", "Tuple(")) and "(" not in name else arg
            pos = _skip(data, pos, element, rows)
        return pos
    raise _Unsupported(type_name)


def restore_native_timezones(data: bytes, types: list[str]) -> bytes:
    """Native output with each top-level ``DateTime`` column named with its zone from
    ``types`` (the result's real column types). Output the scanner cannot walk through
    (a column type it cannot skip) is left as it is."""
    targets = {i for i, t in enumerate(types) if t.startswith("DateTime(")}
    if not targets:
        return data
    out, pos, n = bytearray(), 0, len(data)
    try:
        while pos < n:
            ncols, p = _read_varint(data, pos)
            rows, p = _read_varint(data, p)
            if ncols != len(types):
                return data
            out += data[pos:p]
            for i in range(ncols):
                size, q = _read_varint(data, p)
                q += size  # the column name
                out += data[p:q]
                size, t = _read_varint(data, q)
                written = data[t : t + size].decode()
                t += size
                if i in targets and written == "DateTime":
                    encoded = types[i].encode()
                    out += _varint(len(encoded)) + encoded
                else:
                    out += data[q:t]
                end = _skip(data, t, written, rows)
                out += data[t:end]
                p = end
            if p > n:
                return data
            pos = p
    except (_Unsupported, IndexError, ValueError):
        return data
    return bytes(out)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def without_format(sql: str) -> str:
    """The statement without its top-level ``FORMAT`` clause (and what follows it)."""
    cut = None
    for tok in tokens(sql):
        if tok.depth == 0 and tok.is_word("FORMAT"):
            cut = tok.start
    text = sql if cut is None else sql[:cut]
    return text.rstrip().rstrip(";")
