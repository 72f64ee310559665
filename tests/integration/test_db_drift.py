"""Settings the migrations filled in: `db status` shows where live tables differ, `db migrate` fixes them.

TTLs are checked in a database of their own (its Kafka tables point at a closed
port, so they consume nothing). The broker-list change re-creates the session's
real Kafka tables: trades published before, during and after must each reach
Bronze exactly once (the re-created table resumes from the consumer group's
committed offsets: nothing re-read, nothing lost).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from decimal import Decimal

import pytest
from confluent_kafka import Producer

from records import Trade
from streamapp import tables, topics
from streamapp.clients.clickhouse import connect
from streamapp.clients.kafka import ensure_topics
from streamapp.clients.registry import register_trade_schema
from streamapp.codecs.avro import TradeAvroCodec
from tests.cli import invoke

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def scratch(stack):
    """A database of its own, migrated; its environment for the CLI (Kafka tables inert)."""
    name = f"drift_{uuid.uuid4().hex[:8]}"
    admin = connect(stack)
    admin.command(f"CREATE DATABASE {name}")
    env = {"STREAMAPP_CLICKHOUSE_URL": f"{stack.clickhouse_url.rstrip('/')}/{name}",
           "STREAMAPP_CLICKHOUSE_KAFKA_BROKER_LIST": "127.0.0.1:9"}
    result = invoke("db", "migrate", env=env)
    assert result.exit_code == 0, result.output
    yield name, env
    admin.command(f"DROP DATABASE IF EXISTS {name}")


def engine_full(client, database: str, table: str) -> str:
    return client.command("SELECT engine_full FROM system.tables WHERE database = {d:String} AND name = {t:String}",
                          parameters={"d": database, "t": table})


@pytest.mark.parametrize(("variable", "days", "changed"), [
    ("STREAMAPP_HOT_RETENTION_DAYS", "7", (tables.SILVER, tables.KAFKA_ERRORS, *tables.BRONZE_TABLES)),
    ("STREAMAPP_GOLD_RETENTION_DAYS", "400", (tables.GOLD_STORED, tables.TRADE_IDENTITIES)),
])
def test_a_changed_retention_is_reported_by_status_and_applied_by_migrate(stack, scratch, variable, days, changed):
    database, env = scratch
    client = connect(stack)
    assert invoke("db", "status", env=env).exit_code == 0

    status = invoke("db", "status", env={**env, variable: days})
    assert status.exit_code == 1, status.output
    drifted = {line.split()[1].rstrip(":") for line in status.output.splitlines() if line.startswith("drift")}
    assert drifted == set(changed)
    assert f"INTERVAL {days} DAY" in status.output and variable in status.output
    assert "streamapp db migrate" in status.output

    migrate = invoke("db", "migrate", env={**env, variable: days})
    assert migrate.exit_code == 0, migrate.output
    for table in changed:
        assert f"toIntervalDay({days})" in engine_full(client, database, table), table
        assert f"fixed   {table}: ALTER TABLE {table} MODIFY TTL" in migrate.output
    again = invoke("db", "status", env={**env, variable: days})
    assert again.exit_code == 0, again.output
    assert "up to date" in invoke("db", "migrate", env={**env, variable: days}).output
    # Back to the default: that is now the drift.
    assert invoke("db", "status", env=env).exit_code == 1


def trades_for(symbol: str, first_id: int, count: int, exchange: str = "binance") -> list[Trade]:
    now_us = time.time_ns() // 1000
    return [Trade(exchange=exchange, symbol=symbol, exchange_symbol=symbol.replace("/", ""), trade_id=str(i),
                  trade_seq=i, price=Decimal("10.25") + i, quantity=Decimal("0.5"), side="buy",
                  trade_time=now_us + i, event_time=now_us + i, receive_time=now_us + i, raw_partition=0, raw_offset=i)
            for i in range(first_id, first_id + count)]


def bronze_rows(client, symbol: str | None = None, exchange: str = "binance") -> int:
    where = "WHERE symbol = {s:String}" if symbol else ""
    return client.command(f"SELECT count() FROM {tables.bronze(exchange)} {where}", parameters={"s": symbol or ""})


def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.3)


def publisher(settings, exchange: str) -> Callable[[list[Trade]], None]:
    """Publish trades, Avro-encoded, straight to ``exchange``'s normalized topic (what the Kafka table reads)."""
    topic = topics.normalized(exchange)
    ensure_topics(settings, topics.PIPELINE_TOPICS)
    codec = TradeAvroCodec(asyncio.run(register_trade_schema(settings, topic)))
    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True})

    def publish(batch: list[Trade]) -> None:
        for trade in batch:
            producer.produce(topic, codec.encode(trade), trade.symbol.encode())
        assert producer.flush(30) == 0

    return publish


def test_a_changed_broker_list_recreates_the_kafka_tables_which_resume_from_their_offsets(migrated):
    settings = migrated
    client = connect(settings)
    publish = publisher(settings, "binance")
    symbol = f"K{uuid.uuid4().hex[:8].upper()}/USDT"

    # As ClickHouse sees it, the same broker by another name.
    moved = {"STREAMAPP_CLICKHOUSE_KAFKA_BROKER_LIST": settings.kafka_bootstrap_servers.replace("127.0.0.1", "localhost")}
    before = trades_for(symbol, 1, 50)
    publish(before)
    wait_until(lambda: bronze_rows(client, symbol) == 50, 90, "the first trades in Bronze")
    bronze_before = bronze_rows(client)
    try:
        status = invoke("db", "status", env=moved)
        assert status.exit_code == 1, status.output
        assert (f"drift    {tables.kafka('binance')}: kafka_broker_list is '{settings.kafka_bootstrap_servers}'; "
                f"the settings want '{moved['STREAMAPP_CLICKHOUSE_KAFKA_BROKER_LIST']}'") in status.output

        during = trades_for(symbol, 1001, 50)
        publish(during)  # in the topic while the table is dropped and created again
        migrate = invoke("db", "migrate", env=moved)
        assert migrate.exit_code == 0, migrate.output
        assert f"fixed   {tables.kafka('binance')}: DROP TABLE IF EXISTS {tables.kafka('binance')}" in migrate.output
        assert moved["STREAMAPP_CLICKHOUSE_KAFKA_BROKER_LIST"] in engine_full(client, "default", tables.kafka("binance"))
        after = trades_for(symbol, 2001, 50)
        publish(after)

        wait_until(lambda: bronze_rows(client, symbol) >= 150, 90, "the trades published around the re-create")
        time.sleep(2)  # anything re-read would arrive with them
        # Bronze keeps every delivery: each trade once, and nothing else in the topic read again.
        assert client.query(f"SELECT trade_id, count() FROM {tables.bronze('binance')} WHERE symbol = {{s:String}} "
                            "GROUP BY trade_id HAVING count() > 1", parameters={"s": symbol}).result_rows == []
        assert bronze_rows(client, symbol) == 150
        assert bronze_rows(client) == bronze_before + 100
        assert client.command(f"SELECT count() FROM {tables.SILVER} WHERE symbol = {{s:String}}",
                              parameters={"s": symbol}) == 150
        assert invoke("db", "status", env=moved).exit_code == 0
    finally:
        restored = invoke("db", "migrate")
    assert restored.exit_code == 0, restored.output
    assert settings.kafka_bootstrap_servers in engine_full(client, "default", tables.kafka("binance"))
    last = trades_for(symbol, 3001, 10)
    publish(last)
    wait_until(lambda: bronze_rows(client, symbol) >= 160, 90, "trades after the second re-create")
    assert bronze_rows(client, symbol) == 160


def test_a_kafka_table_left_missing_by_an_interrupted_recreate_is_created_and_resumes(migrated):
    settings = migrated
    client = connect(settings)
    publish = publisher(settings, "kraken")
    symbol = f"M{uuid.uuid4().hex[:8].upper()}/USD"

    publish(trades_for(symbol, 1, 20, "kraken"))
    wait_until(lambda: bronze_rows(client, symbol, "kraken") == 20, 90, "the first trades in Bronze")
    bronze_before = bronze_rows(client, exchange="kraken")
    client.command(f"DROP TABLE {tables.kafka('kraken')}")  # as a re-create interrupted after its DROP leaves it
    try:
        publish(trades_for(symbol, 101, 20, "kraken"))
        status = invoke("db", "status")
        assert status.exit_code == 1, status.output
        assert f"drift    {tables.kafka('kraken')}: missing" in status.output
    finally:
        migrate = invoke("db", "migrate")
    assert migrate.exit_code == 0, migrate.output
    assert f"fixed   {tables.kafka('kraken')}: CREATE TABLE IF NOT EXISTS {tables.kafka('kraken')}" in migrate.output

    wait_until(lambda: bronze_rows(client, symbol, "kraken") >= 40, 90, "the trades published while it was missing")
    time.sleep(2)
    assert bronze_rows(client, symbol, "kraken") == 40
    assert bronze_rows(client, exchange="kraken") == bronze_before + 20
    assert invoke("db", "status").exit_code == 0


def test_migrate_in_a_stack_started_with_three_brokers_lists_all_three(stack, tmp_path, monkeypatch):
    """After `stack up --brokers 3` nothing more is exported: `db migrate` must still give the Kafka
    tables every node, or ClickHouse stops reading whenever the first one is down."""
    from streamapp.settings import Settings
    from streamapp.stack import kafka

    monkeypatch.delenv("STREAMAPP_STACK_BROKERS", raising=False)
    kafka.cluster_id(Settings(home=tmp_path, stack_brokers=3))  # the record `stack up --brokers 3` writes
    name = f"drift_{uuid.uuid4().hex[:8]}"
    admin = connect(stack)
    admin.command(f"CREATE DATABASE {name}")
    try:
        env = {"STREAMAPP_HOME": str(tmp_path), "STREAMAPP_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",  # closed: inert
               "STREAMAPP_CLICKHOUSE_URL": f"{stack.clickhouse_url.rstrip('/')}/{name}"}
        result = invoke("db", "migrate", env=env)
        assert result.exit_code == 0, result.output
        for table in tables.KAFKA_TABLES:
            assert "kafka_broker_list = \\'127.0.0.1:9,127.0.0.1:11,127.0.0.1:13\\'" in engine_full(admin, name, table)
        status = invoke("db", "status", env=env)
        assert status.exit_code == 0, status.output
    finally:
        admin.command(f"DROP DATABASE IF EXISTS {name}")
