"""The warehouse process, spoken to as a ClickHouse server: clickhouse-connect, plain HTTP, Kafka.

Tests use the local stack's warehouse (``warehouse_url``); the restart test runs
a process of its own on its own data directory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import clickhouse_connect
import httpx
import lz4.frame
import pytest
import zstandard
from clickhouse_connect.driver.exceptions import DatabaseError
from tests.integration.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[3]




@contextlib.contextmanager
def running_warehouse(
    home: Path, port: int, timeout: float = 60.0, **env_vars: str
) -> Iterator[tuple[str, subprocess.Popen]]:
    """A warehouse process on ``home`` and ``port`` (more settings in ``env_vars``), stopped
    with SIGTERM on exit."""
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, STREAMAPP_HOME=str(home), STREAMAPP_CLICKHOUSE_URL=f"http://127.0.0.1:{port}")
    env.update(env_vars)
    log = open(home / "warehouse.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamapp.stack.warehouse"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"warehouse exited with {proc.returncode}: {(home / 'warehouse.log').read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/ping", timeout=1).text == "Ok.\n":
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"warehouse did not answer /ping within {timeout}s")
            time.sleep(0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@pytest.fixture(scope="module")
def warehouse_url(stack) -> str:
    """The local stack's warehouse (the restart test runs a process of its own)."""
    return stack.clickhouse_url.rstrip("/")


@pytest.fixture
def client(warehouse_url):
    port = int(warehouse_url.rsplit(":", 1)[1])
    client = clickhouse_connect.get_client(host="127.0.0.1", port=port)
    yield client
    client.close()


@pytest.fixture
def table(client) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:8]}"
    client.command(
        f"CREATE TABLE {name} (id UInt64, symbol LowCardinality(String), price Decimal(18, 8), "
        "ts DateTime64(6, 'UTC'), tags Array(String), note Nullable(String)) "
        "ENGINE = MergeTree ORDER BY id"
    )
    yield name
    client.command(f"DROP TABLE IF EXISTS {name}")


def _rows(n: int, start: int = 0) -> list[tuple]:
    ts = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    return [
        (
            i,
            "BTC/USDT" if i % 2 else "ETH/USDT",
            Decimal("61234.5") + i,
            ts + dt.timedelta(microseconds=i),
            ["a", "b'c"],
            None,
        )
        for i in range(start, start + n)
    ]


COLUMNS = ["id", "symbol", "price", "ts", "tags", "note"]


# --- clickhouse-connect ------------------------------------------------------------


def test_connect_reads_version_and_timezone(client):
    assert client.server_version.startswith("26.1")
    assert client.command("SELECT 1") == 1
    assert client.ping()


def test_insert_native_compressed_and_query(client, table):
    assert client.write_compression == "lz4"  # the default client compresses inserts
    summary = client.insert(table, _rows(5000), column_names=COLUMNS)
    assert summary.written_rows == 5000
    result = client.query(f"SELECT id, symbol, price, ts, tags, note FROM {table} ORDER BY id LIMIT 2")
    # clickhouse-connect returns naive UTC datetimes from a UTC server
    expected = [(*r[:3], r[3].replace(tzinfo=None), *r[4:]) for r in _rows(2)]
    assert result.result_rows == expected
    assert client.command(f"SELECT count() FROM {table}") == 5000


@pytest.mark.parametrize("compress", ["zstd", "gzip", False])
def test_insert_other_compressions(warehouse_url, table, compress):
    if compress == "zstd":
        pytest.importorskip("backports.zstd" if sys.version_info < (3, 14) else "compression.zstd")
    port = int(warehouse_url.rsplit(":", 1)[1])
    other = clickhouse_connect.get_client(host="127.0.0.1", port=port, compress=compress)
    try:
        other.insert(table, _rows(100), column_names=COLUMNS)
        assert other.command(f"SELECT count() FROM {table}") == 100
    finally:
        other.close()


def test_query_arrow_and_df(client, table):
    client.insert(table, _rows(10), column_names=COLUMNS)
    arrow = client.query_arrow(f"SELECT id, symbol, price FROM {table} ORDER BY id")
    assert arrow.num_rows == 10
    assert arrow.column("id").to_pylist() == list(range(10))
    pytest.importorskip("pandas")
    df = client.query_df(f"SELECT id, symbol FROM {table} ORDER BY id")
    assert list(df["id"]) == list(range(10))


def test_parameter_binding(client, table):
    client.insert(table, _rows(10), column_names=COLUMNS)
    # server side: {name:Type}, sent as param_* URL parameters
    count = client.query(
        f"SELECT count() FROM {table} "
        "WHERE symbol = {sym:String} AND has(tags, {tag:String}) AND id < {n:UInt64}",
        parameters={"sym": "BTC/USDT", "tag": "b'c", "n": 6},
    ).result_rows[0][0]
    assert count == 3
    assert client.query("SELECT {a:Array(String)}", parameters={"a": ["x", "y'z", "t\\u"]}).result_rows == [
        (["x", "y'z", "t\\u"],)
    ]
    # client side: %(name)s
    assert client.query("SELECT %(x)s, %(y)s", parameters={"x": 7, "y": "it's"}).result_rows == [(7, "it's")]


def test_parameters_in_a_multipart_form(warehouse_url):
    port = int(warehouse_url.rsplit(":", 1)[1])
    form = clickhouse_connect.get_client(host="127.0.0.1", port=port, form_encode_query_params=True)
    try:
        long_value = "x" * 100_000  # too long for a URL, so clients send it as a form field
        result = form.query("SELECT length({v:String}), {n:Int32}", parameters={"v": long_value, "n": -3})
        assert result.result_rows == [(100_000, -3)]
    finally:
        form.close()


def test_command_and_settings(client):
    assert client.command("SELECT 1, 'a'") == ["1", "a"]
    assert client.command("SELECT 1 WHERE 0") == ""  # an empty result set
    # DDL answers without a result set, so the client returns a summary
    summary = client.command("CREATE TABLE IF NOT EXISTS cmd_probe (a UInt8) ENGINE = Memory")
    assert not isinstance(summary, (str, int, list))
    client.command("DROP TABLE cmd_probe")
    assert client.command("SELECT getSetting('max_threads')", settings={"max_threads": 1}) == 1
    # a request's settings do not leak into the next request
    assert client.command("SELECT getSetting('max_threads')") != 1
    assert client.command("SELECT currentDatabase()", settings={"database": "system"}) == "system"
    assert client.command("SELECT currentDatabase()") == "default"


def test_sql_error_surfaces_and_server_keeps_answering(client):
    with pytest.raises(DatabaseError) as info:
        client.query("SELECT * FROM no_such_table")
    message = str(info.value)
    assert "Code: 60" in message and "UNKNOWN_TABLE" in message and "no_such_table" in message
    with pytest.raises(DatabaseError, match="SYNTAX_ERROR"):
        client.command("SELEC 1")
    assert client.command("SELECT 2") == 2


def test_concurrent_clients_each_insert_and_read_their_rows(warehouse_url, table):
    port = int(warehouse_url.rsplit(":", 1)[1])

    def work(i: int) -> int:
        c = clickhouse_connect.get_client(host="127.0.0.1", port=port)
        try:
            c.insert(table, _rows(100, start=i * 100), column_names=COLUMNS)
            return c.command(f"SELECT count() FROM {table} WHERE id >= {i * 100} AND id < {(i + 1) * 100}")
        finally:
            c.close()

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(work, range(16))) == [100] * 16


# --- plain HTTP ----------------------------------------------------------------


def test_http_get_post_ping(warehouse_url):
    assert httpx.get(f"{warehouse_url}/ping").text == "Ok.\n"
    assert httpx.get(f"{warehouse_url}/").text == "Ok.\n"
    r = httpx.get(warehouse_url, params={"query": "SELECT 1"})
    assert (r.status_code, r.text) == (200, "1\n")
    assert r.headers["X-ClickHouse-Format"] == "TabSeparated"
    assert json.loads(r.headers["X-ClickHouse-Summary"])["read_rows"] == "1"
    assert r.headers["X-ClickHouse-Query-Id"]
    assert r.headers["X-ClickHouse-Timezone"]
    r = httpx.post(warehouse_url, content=b"SELECT 1 + 1 FORMAT JSONEachRow")
    assert (r.status_code, r.text) == (200, '{"plus(1, 1)":2}\n')
    assert r.headers["X-ClickHouse-Format"] == "JSONEachRow"
    r = httpx.get(warehouse_url, params={"query": "SELECT {x:String}", "param_x": "it's"})
    assert r.text == "it\\'s\n"  # TabSeparated escapes the quote
    r = httpx.get(warehouse_url, params={"query": "SELECT 1", "default_format": "JSONCompact"})
    assert json.loads(r.text)["data"] == [[1]]
    # credentials are accepted and ignored: one user, default
    r = httpx.get(warehouse_url, params={"query": "SELECT currentUser()", "user": "default", "password": "x"})
    assert r.text == "default\n"
    r = httpx.get(warehouse_url, params={"query": "SELECT 1"}, auth=("alice", "secret"))
    assert r.text == "1\n"


def test_http_insert_formats(warehouse_url):
    name = f"h_{uuid.uuid4().hex[:8]}"

    def post(query: str | None, body: bytes = b"", **headers) -> httpx.Response:
        params = {"query": query} if query else None
        return httpx.post(warehouse_url, params=params, content=body, headers=headers)

    assert post(f"CREATE TABLE {name} (id UInt32, s String) ENGINE = MergeTree ORDER BY id").status_code == 200
    assert post(f"INSERT INTO {name} FORMAT CSV", b"1,a\n2,b\n").status_code == 200
    assert post(f"INSERT INTO {name} FORMAT JSONEachRow", b'{"id":3,"s":"c"}\n{"id":4,"s":"d"}\n').status_code == 200
    assert post(None, f"INSERT INTO {name} FORMAT TSV\n5\te\n".encode()).status_code == 200
    assert post(None, f"INSERT INTO {name} VALUES (6, 'f'), (7, 'g')".encode()).status_code == 200
    r = post(f"INSERT INTO {name} FORMAT CSV", lz4.frame.compress(b"8,h\n"), **{"Content-Encoding": "lz4"})
    assert r.status_code == 200
    r = post(f"INSERT INTO {name} FORMAT CSV", gzip.compress(b"9,i\n"), **{"Content-Encoding": "gzip"})
    assert r.status_code == 200
    assert json.loads(r.headers["X-ClickHouse-Summary"])["written_rows"] == "1"
    r = post(f"INSERT INTO {name} FORMAT CSV", zstandard.compress(b"10,j\n"), **{"Content-Encoding": "zstd"})
    assert r.status_code == 200
    r = httpx.get(warehouse_url, params={"query": f"SELECT id, s FROM {name} ORDER BY id FORMAT CSV"})
    assert r.text == "".join(f'{i},"{c}"\n' for i, c in zip(range(1, 11), "abcdefghij"))
    r = post(f"INSERT INTO {name} FORMAT CSV", b"not,a,number\n")
    assert r.status_code == 400 or r.status_code == 500
    assert r.headers["X-ClickHouse-Exception-Code"]
    assert r.text.startswith("Code: ")
    post(f"DROP TABLE {name}")


def test_huge_insert_streams(warehouse_url):
    name = f"big_{uuid.uuid4().hex[:8]}"
    n = 1_000_000
    httpx.post(warehouse_url, content=f"CREATE TABLE {name} (id UInt64, s String) ENGINE = MergeTree ORDER BY id")

    def body() -> Iterator[bytes]:
        comp = lz4.frame.LZ4FrameCompressor()
        yield comp.begin()
        for start in range(0, n, 100_000):
            yield comp.compress(b"".join(b"%d,some text for row %d\n" % (i, i) for i in range(start, start + 100_000)))
        yield comp.flush()

    r = httpx.post(
        warehouse_url,
        params={"query": f"INSERT INTO {name} FORMAT CSV"},
        content=body(),
        headers={"Content-Encoding": "lz4"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    r = httpx.get(warehouse_url, params={"query": f"SELECT count(), sum(id) FROM {name}"})
    assert r.text == f"{n}\t{n * (n - 1) // 2}\n"
    httpx.post(warehouse_url, content=f"DROP TABLE {name}")


@pytest.mark.parametrize(
    ("params", "body", "headers", "status", "code", "words"),
    [
        ({"query": "INSERT INTO x FORMAT Native"}, b"garbage", {"Content-Encoding": "lz4"}, 400, "271", "lz4"),
        ({"query": "SELECT 1"}, b"x", {"Content-Encoding": "snappy"}, 400, "89", "snappy"),
        (None, b"", {}, 400, "62", "Empty query"),
        ({"query": "SELECT 1", "no_such_setting": "1"}, b"", {}, 404, "115", "no_such_setting"),
        ({"query": "SELECT {x:UInt8}"}, b"", {}, 400, "456", "x"),
        ({"query": "SELECT {x:UInt8}", "param_x": "abc"}, b"", {}, None, None, "x"),
    ],
)
def test_malformed_requests_get_clear_errors(warehouse_url, params, body, headers, status, code, words):
    r = httpx.post(warehouse_url, params=params, content=body, headers=headers)
    assert r.status_code >= 400
    if status is not None:
        assert r.status_code == status
    if code is not None:
        assert r.headers["X-ClickHouse-Exception-Code"] == code
    assert r.text.startswith("Code: ") and "DB::Exception" in r.text and words in r.text
    assert httpx.get(warehouse_url, params={"query": "SELECT 1"}).text == "1\n"


def test_broken_http_does_not_kill_the_server(warehouse_url):
    host, port = warehouse_url.removeprefix("http://").split(":")
    for raw in (
        b"NONSENSE\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
        b"POST /?query=INSERT+INTO+x+FORMAT+CSV HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n1,2",
    ):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                sock.recv(4096)
    assert httpx.get(warehouse_url, params={"query": "SELECT 1"}).text == "1\n"


def test_unknown_path_is_404(warehouse_url):
    r = httpx.get(f"{warehouse_url}/nope")
    assert r.status_code == 404


# --- restart -------------------------------------------------------------------


def test_data_survives_restart(tmp_path):
    home, port = tmp_path / "home", free_port()
    with running_warehouse(home, port) as (url, _proc):
        c = clickhouse_connect.get_client(host="127.0.0.1", port=port)
        c.command("CREATE TABLE kept (id UInt64, s String) ENGINE = MergeTree ORDER BY id")
        c.insert("kept", [(i, f"s{i}") for i in range(1000)], column_names=["id", "s"])
        c.close()
    with running_warehouse(home, port) as (url, proc):
        c = clickhouse_connect.get_client(host="127.0.0.1", port=port)
        assert c.command("SELECT count(), sum(id) FROM kept") == ["1000", str(999 * 1000 // 2)]
        c.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0  # a clean stop


# --- Kafka engine ----------------------------------------------------------------


def _committed(kafka: str, group: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": kafka, "group.id": group, "enable.auto.commit": False})
    try:
        (tp,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return max(tp.offset, 0)
    finally:
        consumer.close()


def test_kafka_engine_consumes_between_requests(stack, client):
    kafka = stack.kafka_bootstrap_servers
    confluent_kafka = pytest.importorskip("confluent_kafka")
    from confluent_kafka.admin import AdminClient, NewTopic

    suffix = uuid.uuid4().hex[:8]
    topic, group = f"test.warehouse.{suffix}", f"test-warehouse-{suffix}"
    admin = AdminClient({"bootstrap.servers": kafka})
    for future in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        future.result(timeout=30)
    producer = confluent_kafka.Producer({"bootstrap.servers": kafka})

    def produce(ids: range) -> None:
        for i in ids:
            producer.produce(topic, json.dumps({"id": i, "symbol": "BTC/USDT", "price": "1.5"}).encode())
        producer.flush(10)

    dst, queue, view = f"kdst_{suffix}", f"kq_{suffix}", f"kmv_{suffix}"
    try:
        client.command(
            f"CREATE TABLE {dst} (id UInt64, symbol String, price Decimal(18, 8)) ENGINE = MergeTree ORDER BY id"
        )
        client.command(
            f"CREATE TABLE {queue} (id UInt64, symbol String, price Decimal(18, 8)) ENGINE = Kafka "
            f"SETTINGS kafka_broker_list = '{kafka}', kafka_topic_list = '{topic}', "
            f"kafka_group_name = '{group}', kafka_format = 'JSONEachRow', kafka_flush_interval_ms = 500"
        )
        client.command(f"CREATE MATERIALIZED VIEW {view} TO {dst} AS SELECT id, symbol, price FROM {queue}")
        produce(range(50))
        deadline = time.monotonic() + 60
        while client.command(f"SELECT count() FROM {dst}") < 50:
            assert time.monotonic() < deadline, "the Kafka engine did not deliver 50 rows within 60 s"
            time.sleep(0.5)

        # Now make no request at all while more messages arrive: the engine commits
        # offsets after writing, so the committed offset shows it kept consuming.
        produce(range(50, 120))
        deadline = time.monotonic() + 60
        while _committed(kafka, group, topic) < 120:
            assert time.monotonic() < deadline, "the Kafka engine stopped consuming between requests"
            time.sleep(0.5)
        assert client.command(f"SELECT count(), sum(id) FROM {dst}") == ["120", str(sum(range(120)))]
        assert client.command(f"SELECT sum(price) FROM {dst}") == 180
    finally:
        for stmt in (f"DROP VIEW IF EXISTS {view}", f"DROP TABLE IF EXISTS {queue}", f"DROP TABLE IF EXISTS {dst}"):
            client.command(stmt)
        admin.delete_topics([topic])
