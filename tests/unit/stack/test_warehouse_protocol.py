"""The warehouse's HTTP protocol pieces: parameters, bodies, INSERT splitting, errors."""

from __future__ import annotations

import gzip
import json
import zlib

import lz4.frame
import pytest
import zstandard

from streamapp.stack.http_protocol import (
    ClickHouseError,
    InsertSplit,
    RequestOptions,
    content_type,
    decompress_all,
    first_keyword,
    has_result_set,
    http_status_for,
    is_empty_statement,
    make_decoder,
    normalize_engine_message,
    output_format,
    parse_params,
    quote_string,
    set_statement,
    split_insert,
    summary_header,
)

# --- parameters ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([("query", "SELECT 1")], RequestOptions(query="SELECT 1")),
        (
            # what clickhouse-connect sends with a bound query
            [
                ("database", "default"),
                ("session_id", "f3c5"),
                ("date_time_input_format", "best_effort"),
                ("cast_string_to_dynamic_use_inference", "1"),
                ("cancel_http_readonly_queries_on_client_close", "1"),
                ("send_progress_in_http_headers", "1"),
                ("http_headers_progress_interval_ms", "120000"),
                ("enable_http_compression", "1"),
                ("wait_end_of_query", "1"),
                ("query_id", "q-1"),
                ("param_sym", "BTC/USDT"),
                ("client_protocol_version", "54405"),
            ],
            RequestOptions(
                database="default",
                query_id="q-1",
                session_id="f3c5",
                wait_end_of_query=True,
                client_protocol_version=54405,
                settings={"date_time_input_format": "best_effort", "cast_string_to_dynamic_use_inference": "1"},
                query_params={"sym": "BTC/USDT"},
            ),
        ),
        (
            [("user", "default"), ("password", "secret"), ("default_format", "JSONEachRow"), ("max_threads", "1")],
            RequestOptions(
                default_format="JSONEachRow", user="default", password="secret", settings={"max_threads": "1"}
            ),
        ),
        ([("database", ""), ("query_id", "")], RequestOptions()),
        ([("param_a", "it's"), ("param_b", "")], RequestOptions(query_params={"a": "it's", "b": ""})),
    ],
)
def test_parse_params(pairs, expected):
    assert parse_params(pairs) == expected


@pytest.mark.parametrize(
    ("pairs", "name"),
    [
        ([("max threads", "1")], "UNKNOWN_SETTING"),
        ([("x;DROP", "1")], "UNKNOWN_SETTING"),
        ([("param_", "1")], "BAD_QUERY_PARAMETER"),
    ],
)
def test_parse_params_rejects(pairs, name):
    with pytest.raises(ClickHouseError) as info:
        parse_params(pairs)
    assert info.value.name == name


@pytest.mark.parametrize(
    ("value", "literal"),
    [("abc", "'abc'"), ("it's", "'it\\'s'"), ("a\\b", "'a\\\\b'"), ("", "''")],
)
def test_quote_string(value, literal):
    assert quote_string(value) == literal


@pytest.mark.parametrize(
    ("settings", "sql"),
    [
        ({"max_threads": "1"}, "SET max_threads = '1'"),
        ({"a": "x'y", "b": None}, "SET a = 'x\\'y', b = DEFAULT"),
    ],
)
def test_set_statement(settings, sql):
    assert set_statement(settings) == sql


def test_set_statement_rejects_odd_names():
    with pytest.raises(ClickHouseError) as info:
        set_statement({"a = 1, b": "2"})
    assert info.value.name == "UNKNOWN_SETTING"


# --- bodies --------------------------------------------------------------------

PAYLOAD = b"".join(b"%d,row %d\n" % (i, i) for i in range(5000))


def _lz4_blocks(data: bytes, size: int) -> bytes:
    """As clickhouse-connect sends it: one lz4 frame per block, frames back to back."""
    return b"".join(lz4.frame.compress(data[i : i + size]) for i in range(0, len(data), size))


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        (None, PAYLOAD),
        ("identity", PAYLOAD),
        ("lz4", lz4.frame.compress(PAYLOAD)),
        ("lz4", _lz4_blocks(PAYLOAD, 1000)),
        ("LZ4", _lz4_blocks(PAYLOAD, 7)),
        ("zstd", zstandard.ZstdCompressor().compress(PAYLOAD)),
        ("zstd", b"".join(zstandard.ZstdCompressor().compress(c) for c in _split(PAYLOAD, 999))),
        ("gzip", gzip.compress(PAYLOAD)),
        ("gzip", gzip.compress(PAYLOAD[:100]) + gzip.compress(PAYLOAD[100:])),
        ("deflate", zlib.compress(PAYLOAD)),
    ],
)
@pytest.mark.parametrize("chunk", [1, 13, 1 << 20])
def test_decompress(encoding, body, chunk):
    if chunk == 1 and len(body) > 20000:
        body_chunks = _split(body, 97)
    else:
        body_chunks = _split(body, chunk)
    assert decompress_all(encoding, body_chunks) == PAYLOAD


def test_decompress_empty_body():
    assert decompress_all("lz4", []) == b""


@pytest.mark.parametrize(
    ("encoding", "body", "name", "words"),
    [
        ("lz4", b"garbage", "CANNOT_DECOMPRESS", "as lz4"),
        ("lz4", lz4.frame.compress(PAYLOAD)[:-10], "CANNOT_DECOMPRESS", "truncated"),
        ("zstd", b"\x00\x01\x02\x03garbage", "CANNOT_DECOMPRESS", "as zstd"),
        ("gzip", b"not gzip at all", "CANNOT_DECOMPRESS", "as gzip"),
        ("deflate", zlib.compress(PAYLOAD)[:50], "CANNOT_DECOMPRESS", "truncated"),
    ],
)
def test_decompress_errors(encoding, body, name, words):
    with pytest.raises(ClickHouseError) as info:
        decompress_all(encoding, [body])
    err = info.value
    assert (err.name, err.code, err.http_status) == (name, 271, 400)
    assert words in err.text


def test_unknown_encoding():
    with pytest.raises(ClickHouseError) as info:
        make_decoder("snappy")
    assert info.value.name == "UNKNOWN_COMPRESSION_METHOD"
    assert "'snappy'" in info.value.text


# --- statements ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # clickhouse-connect: statement in the URL, a newline, then the body
        (
            "INSERT INTO default.trades (`id`, `price`) FORMAT Native\n\x01\x02",
            InsertSplit(
                "INSERT INTO default.trades (`id`, `price`)",
                "",
                "Native",
                len("INSERT INTO default.trades (`id`, `price`) FORMAT Native\n"),
            ),
        ),
        ("INSERT INTO t FORMAT CSV\n1,2\n", InsertSplit("INSERT INTO t", "", "CSV", 25)),
        ("insert into t format JSONEachRow {\"a\":1}", InsertSplit("insert into t", "", "JSONEachRow", 33)),
        ("INSERT INTO t FORMAT CSV  \r\n1,2", InsertSplit("INSERT INTO t", "", "CSV", 28)),
        ("INSERT INTO t FORMAT CSV", InsertSplit("INSERT INTO t", "", "CSV", 24)),
        ("INSERT INTO t VALUES (1, 'a')", InsertSplit("INSERT INTO t", "", "Values", 20)),
        (
            "INSERT INTO t (a, `format`) SETTINGS async_insert = 1 FORMAT TSV\nx",
            InsertSplit("INSERT INTO t (a, `format`)", "SETTINGS async_insert = 1", "TSV", 65),
        ),
        (
            "/* c */ INSERT INTO `my db`.`t` -- FORMAT CSV\n FORMAT `CSVWithNames`\n",
            InsertSplit("INSERT INTO `my db`.`t` -- FORMAT CSV", "", "CSVWithNames", 69),
        ),
        ("INSERT INTO t SELECT * FROM s FORMAT CSV", None),
        ("INSERT INTO t WITH 1 AS x SELECT x", None),
        ("INSERT INTO t FROM INFILE '/x.csv' FORMAT CSV", None),
        ("SELECT 'INSERT INTO t FORMAT CSV'", None),
        ("SELECT 1 FORMAT CSV", None),
        ("INSERT INTO t FORMAT", None),
        ("", None),
    ],
)
def test_split_insert(sql, expected):
    assert split_insert(sql) == expected


def test_split_insert_data_offsets():
    sql = "INSERT INTO t FORMAT CSV\n1,2\n3,4\n"
    split = split_insert(sql)
    assert sql[split.data_start :] == "1,2\n3,4\n"
    values = "INSERT INTO t VALUES (1,'a'),(2,'b')"
    assert values[split_insert(values).data_start :] == " (1,'a'),(2,'b')"


@pytest.mark.parametrize(
    ("split", "sql"),
    [
        (InsertSplit("INSERT INTO t", "", "Native", 0), "INSERT INTO t\nFROM INFILE '/tmp/x'\nFORMAT Native"),
        (
            InsertSplit("INSERT INTO t (a)", "SETTINGS async_insert = 1", "CSV", 0),
            "INSERT INTO t (a)\nFROM INFILE '/tmp/x'\nSETTINGS async_insert = 1\nFORMAT CSV",
        ),
    ],
)
def test_infile_sql(split, sql):
    assert split.infile_sql("/tmp/x") == sql


@pytest.mark.parametrize(
    ("sql", "fmt"),
    [
        ("SELECT 1\n FORMAT Native", "Native"),
        ("SELECT 'FORMAT CSV' FORMAT JSONEachRow", "JSONEachRow"),
        ("SELECT * FROM (SELECT 1 FORMAT CSV)", None),
        ("SELECT 1 -- FORMAT CSV", None),
        ("SELECT 1", None),
        ("SELECT 1 FORMAT `Arrow` SETTINGS max_threads = 1", "Arrow"),
    ],
)
def test_output_format(sql, fmt):
    assert output_format(sql) == fmt


@pytest.mark.parametrize(
    ("sql", "word"),
    [("select 1", "SELECT"), ("  -- c\n use db", "USE"), ("(SELECT 1)", "SELECT"), ("", ""), ("'x'", "")],
)
def test_first_keyword(sql, word):
    assert first_keyword(sql) == word


@pytest.mark.parametrize(("sql", "empty"), [("", True), (" \n ;", True), ("-- only\n", True), ("SELECT 1", False)])
def test_is_empty_statement(sql, empty):
    assert is_empty_statement(sql) is empty


@pytest.mark.parametrize(
    ("sql", "body", "result"),
    [
        ("SELECT 1 WHERE 0", b"", True),  # an empty result set is still one
        ("CREATE TABLE t (a UInt8) ENGINE = Memory", b"", False),
        ("INSERT INTO t FORMAT CSV", b"", False),
        ("SET max_threads = 1", b"", False),
        ("EXISTS TABLE t", b"1\n", True),
        ("SHOW TABLES", b"", True),
        ("1 + 1", b"2\n", True),  # chdb's implicit SELECT
    ],
)
def test_has_result_set(sql, body, result):
    assert has_result_set(sql, body) is result


# --- errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine_text", "code", "name", "text"),
    [
        (
            "Code: 60. DB::Exception: Unknown table expression identifier 'nope' in scope SELECT * FROM nope. "
            "(UNKNOWN_TABLE)",
            60,
            "UNKNOWN_TABLE",
            "Code: 60. DB::Exception: Unknown table expression identifier 'nope' in scope SELECT * FROM nope. "
            "(UNKNOWN_TABLE)",
        ),
        (
            # chdb wraps pipeline errors again, version trailers included
            "Code: 73. DB::Exception: Code: 73. DB::Exception: Code: 73. DB::Exception: Unknown format "
            "Nonexist. Maybe you meant: []. (UNKNOWN_FORMAT) (version 26.1.2.1). (UNKNOWN_FORMAT) "
            "(version 26.1.2.1). (UNKNOWN_FORMAT)",
            73,
            "UNKNOWN_FORMAT",
            "Code: 73. DB::Exception: Unknown format Nonexist. Maybe you meant: []. (UNKNOWN_FORMAT)",
        ),
        (
            "Code: 115. DB::Exception: Unknown setting 'bogus'. (UNKNOWN_SETTING) (version 26.1.2.1 (official build))",
            115,
            "UNKNOWN_SETTING",
            "Code: 115. DB::Exception: Unknown setting 'bogus'. (UNKNOWN_SETTING)",
        ),
        ("something broke", 1001, "STD_EXCEPTION", "Code: 1001. DB::Exception: something broke (STD_EXCEPTION)"),
    ],
)
def test_error_from_engine(engine_text, code, name, text):
    err = ClickHouseError.from_engine(engine_text)
    assert (err.code, err.name, err.text) == (code, name, text)


def test_error_body_is_clickhouse_shaped():
    err = ClickHouseError.make("CANNOT_DECOMPRESS", "Cannot decompress the request body as lz4: bad frame")
    assert err.body("26.1.2.1") == (
        b"Code: 271. DB::Exception: Cannot decompress the request body as lz4: bad frame. "
        b"(CANNOT_DECOMPRESS) (version 26.1.2.1)\n"
    )
    assert err.http_status == 400


def test_normalize_keeps_distinct_codes():
    text = "Code: 27. DB::Exception: Code: 6. DB::Exception: bad. (CANNOT_PARSE_TEXT)"
    assert normalize_engine_message(text) == text


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("SYNTAX_ERROR", 400),
        ("CANNOT_PARSE_INPUT_ASSERTION_FAILED", 400),
        ("UNKNOWN_TABLE", 404),
        ("UNKNOWN_SETTING", 404),
        ("QUERY_IS_TOO_LARGE", 413),
        ("NOT_IMPLEMENTED", 501),
        ("TABLE_ALREADY_EXISTS", 500),
        ("STD_EXCEPTION", 500),
    ],
)
def test_http_status(name, status):
    assert http_status_for(name) == status


# --- responses -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "ctype"),
    [
        ("TabSeparated", "text/tab-separated-values; charset=UTF-8"),
        ("TSVWithNamesAndTypes", "text/tab-separated-values; charset=UTF-8"),
        ("Native", "application/octet-stream"),
        ("Arrow", "application/octet-stream"),
        ("JSONEachRow", "application/x-ndjson; charset=UTF-8"),
        ("JSONCompactStrings", "application/json; charset=UTF-8"),
        ("Pretty", "text/plain; charset=UTF-8"),
    ],
)
def test_content_type(fmt, ctype):
    assert content_type(fmt) == ctype


def test_summary_header_numbers_are_strings():
    header = summary_header(
        read_rows=3, read_bytes=30, written_rows=3, written_bytes=30, result_bytes=0, elapsed_ns=1500
    )
    assert json.loads(header) == {
        "read_rows": "3",
        "read_bytes": "30",
        "written_rows": "3",
        "written_bytes": "30",
        "total_rows_to_read": "3",
        "result_rows": "0",
        "result_bytes": "0",
        "elapsed_ns": "1500",
    }


# --- issue 11: KILL QUERY, streamed errors and headers, Native time zones ---------------


def test_kill_query_condition_sees_client_query_ids():
    from streamapp.stack.http_protocol import kill_query

    kill = kill_query("KILL QUERY WHERE query_id = 'q-1' SYNC FORMAT JSON", {"tok": "q-1"})
    assert kill.sync and kill.sql.endswith(" ASYNC FORMAT JSON")
    assert "multiIf(position(query, concat('streamapp-request:', 'tok')) > 0, 'q-1', query_id)" in kill.sql
    assert "WHERE (query_id = 'q-1')" in kill.sql
    assert "streamapp-request:tok" not in kill.sql  # never matches its own text
    assert kill_query("SELECT 1", {}) is None
    assert kill_query("KILL QUERY WHERE user = 'x' TEST", {}).sql.endswith(" TEST")
    with pytest.raises(ClickHouseError, match="WHERE"):
        kill_query("KILL QUERY", {})


def test_exception_block_is_what_clickhouse_connect_parses():
    from clickhouse_connect.driver.transform import extract_exception_with_tag

    from streamapp.stack.http_protocol import exception_block

    block = exception_block("abc123", "Code: 395. DB::Exception: boom. (X) (version 26.1)\n")
    assert block.startswith(b"__exception__\r\nabc123\r\nCode: 395.")
    assert extract_exception_with_tag(b"1\n2\n" + block, "abc123") == "Code: 395. DB::Exception: boom. (X) (version 26.1)"


@pytest.mark.parametrize(
    ("fmt", "block", "header"),
    [
        ("TSVWithNames", b"a\tb\n1\t2\n", 4),
        ("TSVWithNamesAndTypes", b"a\nUInt8\n1\n", 8),
        ("JSONCompactEachRowWithNames", b'["a"]\n[1]\n', 6),
        ("RowBinaryWithNamesAndTypes", b"\x01\x01a\x05UInt8\x07", 9),
    ],
)
def test_header_of_a_streamed_block(fmt, block, header):
    from streamapp.stack.http_protocol import header_length, stream_header_kind

    assert header_length(stream_header_kind(fmt), block) == header
    assert stream_header_kind("Native") == ("plain", 0) and stream_header_kind("JSON") is None


def test_native_datetime_columns_get_their_zone_back():
    from streamapp.stack.http_protocol import restore_native_timezones

    def block(type_name: bytes) -> bytes:  # 2 columns, 2 rows: s String, t DateTime
        return b"\x02\x02" + b"\x01s\x06String\x01a\x02bc" + b"\x01t" + bytes([len(type_name)]) + type_name + b"\x00" * 8

    zoned = b"DateTime('Asia/Tokyo')"
    types = ["String", zoned.decode()]
    assert restore_native_timezones(block(b"DateTime") * 2, types) == block(zoned) * 2
    assert restore_native_timezones(block(b"DateTime"), ["String", "DateTime"]) == block(b"DateTime")
    unknown = b"\x01\x01\x01x\x04JSON\x00"  # a type the scanner cannot skip: left as it is
    assert restore_native_timezones(unknown, ["DateTime('UTC')"]) == unknown
