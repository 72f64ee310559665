"""The pure drift comparison: live ``engine_full`` (as ClickHouse 26.1 shows it) against the migrations."""

from __future__ import annotations

import pytest

from streamapp import migrations, tables
from streamapp.settings import Settings

# engine_full as system.tables showed it for tables created by sql/ with the default settings.
SILVER_30 = ("ReplacingMergeTree PARTITION BY toYYYYMMDD(trade_time) ORDER BY (exchange, symbol, trade_time, trade_id) "
             "TTL toDateTime(ingest_time) + toIntervalDay(30) SETTINGS index_granularity = 8192")
GOLD_3650 = ("AggregatingMergeTree PARTITION BY toYYYYMM(window_start) ORDER BY (exchange, symbol, window_start) "
             "TTL window_start + toIntervalDay(3650) SETTINGS index_granularity = 8192")
KAFKA = ("Kafka SETTINGS kafka_broker_list = '127.0.0.1:9092', kafka_topic_list = 'market.crypto.trades.binance.normalized', "
         "kafka_group_name = 'clickhouse-binance', kafka_format = 'AvroConfluent', "
         "format_avro_schema_registry_url = 'http://127.0.0.1:8081', kafka_handle_error_mode = 'stream', "
         "kafka_flush_interval_ms = 100, kafka_poll_timeout_ms = 20, kafka_consumer_reschedule_ms = 10, "
         "kafka_thread_per_consumer = 1, kafka_num_consumers = 1")
IDENTITIES = ("ReplacingMergeTree PARTITION BY toYYYYMM(trade_time) ORDER BY (exchange, trade_time, symbol, trade_id) "
              "TTL toDateTime(trade_time) + toIntervalDay(3650) SETTINGS ttl_only_drop_parts = 1, index_granularity = 8192")


# What the engine_full strings above were created with (the environment may say otherwise).
DEFAULTS = {"kafka_bootstrap_servers": "127.0.0.1:9092", "schema_registry_url": "http://127.0.0.1:8081",
            "clickhouse_kafka_broker_list": "", "clickhouse_schema_registry_url": "",
            "hot_retention_days": 30, "gold_retention_days": 3650}


def settings(**changed) -> Settings:
    return Settings(**{**DEFAULTS, **changed})


def live(**changed: str) -> dict[str, str]:
    """The live tables of a warehouse migrated with the default settings, some replaced."""
    wanted = migrations.wanted_tables(settings(), migrations.discover())
    engines = {}
    for table, want in wanted.items():
        if want.kafka is not None:
            engines[table] = KAFKA.replace("binance", table.removeprefix("kafka_trades_"))
        elif table == tables.GOLD_STORED:
            engines[table] = GOLD_3650
        elif table == tables.TRADE_IDENTITIES:
            engines[table] = IDENTITIES
        elif want.ttl is not None:
            engines[table] = SILVER_30.replace("toDateTime(ingest_time)", want.ttl.split(" + ")[0])
        else:
            engines[table] = "MergeTree ORDER BY x SETTINGS index_granularity = 8192"
    engines.update(changed)
    return engines


def drift(wanted_settings: Settings, engines: dict[str, str]) -> list[migrations.Drift]:
    return migrations.drift(migrations.wanted_tables(wanted_settings, migrations.discover()), engines)


def test_tables_created_under_todays_settings_do_not_drift():
    assert drift(settings(), live()) == []


@pytest.mark.parametrize(("a", "b", "same"), [
    ("toDateTime(ingest_time) + INTERVAL 30 DAY", "toDateTime(ingest_time) + toIntervalDay(30)", True),
    ("window_start + INTERVAL 3650 DAY", "window_start + toIntervalDay(3650)", True),
    ("window_start + interval 1 hour", "window_start + toIntervalHour(1)", True),
    ("toDateTime(ingest_time) + INTERVAL 7 DAY", "toDateTime(ingest_time) + toIntervalDay(30)", False),
    ("toDateTime(ingest_time) + INTERVAL 30 DAY", "toDateTime(seen_at) + toIntervalDay(30)", False),
    ("x + INTERVAL 30 DAY", "x + toIntervalMonth(30)", False),
])
def test_ttl_expressions_compare_as_clickhouse_shows_them(a, b, same):
    assert migrations.same_expression(a, b) is same


def test_a_changed_hot_retention_drifts_every_hot_table_with_its_alter():
    found = drift(settings(hot_retention_days=7), live())
    assert {d.table for d in found} == {tables.SILVER, tables.KAFKA_ERRORS, *tables.BRONZE_TABLES}
    silver = next(d for d in found if d.table == tables.SILVER)
    assert (silver.item, silver.live, silver.wanted) == (
        "TTL", "toDateTime(ingest_time) + toIntervalDay(30)", "toDateTime(ingest_time) + INTERVAL 7 DAY")
    assert silver.fix == ("ALTER TABLE silver_trades MODIFY TTL toDateTime(ingest_time) + INTERVAL 7 DAY",)
    assert "STREAMAPP_HOT_RETENTION_DAYS" in silver.because and "GOLD" not in silver.because


def test_a_changed_gold_retention_drifts_gold_and_the_trade_identities():
    found = drift(settings(gold_retention_days=400), live())
    assert {d.table for d in found} == {tables.GOLD_STORED, tables.TRADE_IDENTITIES}
    assert all(d.because == "STREAMAPP_GOLD_RETENTION_DAYS" for d in found)


def test_a_changed_broker_list_recreates_each_kafka_table_under_the_same_group():
    found = drift(settings(clickhouse_kafka_broker_list="redpanda:9092"), live())
    assert {d.table for d in found} == set(tables.KAFKA_TABLES)
    binance = next(d for d in found if d.table == tables.kafka("binance"))
    assert (binance.item, binance.live, binance.wanted) == ("kafka_broker_list", "127.0.0.1:9092", "redpanda:9092")
    drop, create = binance.fix
    assert drop == "DROP TABLE IF EXISTS kafka_trades_binance"
    assert create.startswith("CREATE TABLE IF NOT EXISTS kafka_trades_binance\n")
    assert "kafka_broker_list = 'redpanda:9092'" in create and "kafka_group_name = 'clickhouse-binance'" in create
    assert "STREAMAPP_CLICKHOUSE_KAFKA_BROKER_LIST" in binance.because


def test_a_changed_registry_url_is_drift_too_and_each_table_is_recreated_once():
    found = drift(settings(clickhouse_kafka_broker_list="redpanda:9092",
                           clickhouse_schema_registry_url="http://redpanda:8081"), live())
    assert sorted((d.table, d.item) for d in found) == sorted(
        (t, item) for t in tables.KAFKA_TABLES for item in ("kafka_broker_list", "format_avro_schema_registry_url"))
    plan = dict(migrations.fixes(found))
    assert set(plan) == set(tables.KAFKA_TABLES)
    assert all(len(statements) == 2 for statements in plan.values())


def test_a_missing_kafka_table_is_created_and_anything_else_missing_is_left_to_a_person():
    engines = live()
    del engines[tables.kafka("kraken")], engines[tables.SILVER]
    found = {d.table: d for d in drift(settings(), engines)}
    assert set(found) == {tables.kafka("kraken"), tables.SILVER}
    assert found[tables.kafka("kraken")].fix[0].startswith("CREATE TABLE IF NOT EXISTS kafka_trades_kraken\n")
    assert found[tables.SILVER].fix == ()
    assert str(found[tables.SILVER]) == "silver_trades: missing (created by an applied migration)"


def test_a_later_modify_ttl_in_a_migration_is_what_is_wanted(tmp_path):
    (tmp_path / "0001_t.sql").write_text(
        "CREATE TABLE IF NOT EXISTS t\n(\n    a DateTime\n)\nENGINE = MergeTree\nORDER BY a\n"
        "TTL a + INTERVAL {hot_retention_days} DAY;\n")
    (tmp_path / "0002_t_ttl.sql").write_text("ALTER TABLE t MODIFY TTL a + INTERVAL {gold_retention_days} DAY;\n")
    wanted = migrations.wanted_tables(settings(gold_retention_days=99), migrations.discover(tmp_path))
    assert wanted["t"].ttl == "a + INTERVAL 99 DAY"
    assert wanted["t"].placeholders["TTL"] == ("gold_retention_days",)
    assert migrations.drift(wanted, {"t": "MergeTree ORDER BY a TTL a + toIntervalDay(99) SETTINGS x = 1"}) == []


def test_a_table_a_later_migration_drops_is_not_wanted(tmp_path):
    """0008 drops gold_ohlcv_5m…1d and creates views of the same names: no TTL is wanted of those views."""
    (tmp_path / "0001_t.sql").write_text(
        "CREATE TABLE IF NOT EXISTS t\n(\n    a DateTime\n)\nENGINE = MergeTree\nORDER BY a\n"
        "TTL a + INTERVAL {gold_retention_days} DAY;\n")
    (tmp_path / "0002_t_view.sql").write_text("DROP TABLE IF EXISTS t;\n\nCREATE VIEW IF NOT EXISTS t AS\nSELECT 1;\n")
    assert "t" in migrations.wanted_tables(settings(), migrations.discover(tmp_path)[:1])
    assert migrations.wanted_tables(settings(), migrations.discover(tmp_path)) == {}
    assert migrations.drift(migrations.wanted_tables(settings(), migrations.discover(tmp_path)), {"t": "View"}) == []


def test_gold_stores_only_1m_after_0008():
    wanted = migrations.wanted_tables(settings(), migrations.discover())
    assert [t for t in tables.GOLD_TABLES if t in wanted] == [tables.GOLD_STORED]
