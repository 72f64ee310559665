"""streamapp/sql/ is data: its files parse, fill from settings, and agree with the code's names."""

from __future__ import annotations

import re

import pytest

from streamapp import groups, migrations, tables, topics
from streamapp.errors import StreamappError
from streamapp.exchanges import EXCHANGES
from streamapp.settings import Settings

ALL_SQL = "\n".join(m.text for m in migrations.discover())


def test_migrations_are_numbered_from_one_without_gaps():
    versions = [m.version for m in migrations.discover()]
    assert versions == list(range(1, len(versions) + 1))


def test_every_statement_is_idempotent():
    """Creates are IF NOT EXISTS; a view's query may be replaced (again: same query); identities may be
    inserted again (a ReplacingMergeTree folds repeats); drops are IF EXISTS."""
    for migration in migrations.discover():
        for statement in migrations.statements(migration.text, migrations.placeholders(Settings())):
            assert re.match(r"CREATE (MATERIALIZED VIEW|VIEW|TABLE) IF NOT EXISTS "
                            rf"|ALTER TABLE \w+_mv MODIFY QUERY\n|INSERT INTO {tables.TRADE_IDENTITIES} "
                            r"|DROP (VIEW|TABLE) IF EXISTS \w+$", statement), (
                migration.path.name, statement[:60])


def test_placeholders_are_filled_from_settings():
    settings = Settings(clickhouse_kafka_broker_list="redpanda:9092", clickhouse_schema_registry_url="http://redpanda:8081",
                        hot_retention_days=7)
    text = "\n".join(
        "\n".join(migrations.statements(m.text, migrations.placeholders(settings))) for m in migrations.discover()
    )
    assert "kafka_broker_list = 'redpanda:9092'" in text
    assert "format_avro_schema_registry_url = 'http://redpanda:8081'" in text
    assert "INTERVAL 7 DAY" in text
    assert "{" not in text.replace("{}", "")


def test_an_unknown_placeholder_is_refused():
    with pytest.raises(StreamappError, match=r"unknown placeholder \{nope\}"):
        migrations.statements("CREATE TABLE IF NOT EXISTS t (a Int8) ENGINE = Log SETTINGS x = '{nope}';", {})


def test_comment_lines_are_not_statements():
    assert migrations.statements("-- a; b\nSELECT 1;\n-- c;\nSELECT 2;\n", {}) == ["SELECT 1", "SELECT 2"]


@pytest.mark.parametrize("name", [
    *tables.KAFKA_TABLES, *tables.BRONZE_TABLES, tables.SILVER, tables.KAFKA_ERRORS,
    *tables.GOLD_TABLES, *tables.CANDLE_VIEWS, tables.TRADE_IDENTITIES,
])
def test_every_table_the_code_names_is_created(name):
    assert re.search(rf"CREATE (TABLE|VIEW) IF NOT EXISTS {re.escape(name)}(\n| AS\n)", ALL_SQL), name


def test_every_topic_and_group_in_sql_is_declared_in_the_code():
    assert set(re.findall(r"kafka_topic_list = '([^']+)'", ALL_SQL)) == set(topics.NORMALIZED_TOPICS)
    assert set(re.findall(r"kafka_group_name = '([^']+)'", ALL_SQL)) == set(groups.CLICKHOUSE_GROUPS)
    for exchange in EXCHANGES:
        assert f"kafka_topic_list = '{topics.normalized(exchange)}'" in ALL_SQL


def _columns(create: str) -> list[str]:
    body = create[create.index("(") + 1:]
    names = []
    depth = 0
    for line in body.splitlines():
        stripped = line.split("--")[0].strip()
        if depth == 0 and stripped.startswith(")"):
            break
        if depth == 0 and stripped:
            names.append(stripped.split()[0])
        depth += stripped.count("(") - stripped.count(")")
    return names


def _selected(select: str) -> list[str]:
    """Output names of a view's SELECT list (``expr AS name`` or a bare column)."""
    part = select[select.index("SELECT") + len("SELECT"): select.index("\nFROM")]
    names, depth, current = [], 0, ""
    for char in part:
        if char == "," and depth == 0:
            names.append(current)
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current += char
    names.append(current)
    return [re.split(r"\s+AS\s+", n.strip())[-1].strip() for n in names]


def _statements():
    for migration in migrations.discover():
        yield from migrations.statements(migration.text, migrations.placeholders(Settings()))


def test_each_materialized_view_selects_its_target_columns_in_order():
    """Inserts through views are positional by name; keep the lists identical and in order."""
    creates = {}
    views = []
    targets = {}
    dropped = set()
    for statement in _statements():
        if match := re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", statement):
            creates[match.group(1)] = _columns(statement)
        elif match := re.match(r"CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) TO (\w+) AS", statement):
            targets[match.group(1)] = match.group(2)
            views.append((match.group(2), statement))
        elif match := re.match(r"ALTER TABLE (\w+) MODIFY QUERY\n", statement):
            views.append((targets[match.group(1)], statement))
        elif match := re.match(r"DROP VIEW IF EXISTS (\w+)$", statement):
            dropped.add(match.group(1))
    # per exchange: Kafka -> Bronze, Kafka -> errors, Bronze -> Silver (and its new query);
    # per interval: Silver -> Gold; Silver -> trade identities
    assert len(views) == 4 * len(EXCHANGES) + len(tables.INTERVALS) + 1
    # 0008: only 1m's is left of the Silver -> Gold views
    assert dropped == {f"{tables.gold(i)}_mv" for i in tables.INTERVALS if i != tables.STORED_INTERVAL}
    for target, statement in views:
        assert _selected(statement) == creates[target], (target, statement[:80])


def test_each_rolled_up_gold_view_has_the_columns_of_the_table_it_replaces():
    """0008's gold_ohlcv_<i> views stand in for 0003's tables: same columns, same order (readers and _final)."""
    creates, views = {}, {}
    for statement in _statements():
        if match := re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", statement):
            creates[match.group(1)] = _columns(statement)
        elif match := re.match(r"CREATE VIEW IF NOT EXISTS (\w+) AS\n", statement):
            views[match.group(1)] = statement
    rolled = [tables.gold(i) for i in tables.INTERVALS if i != tables.STORED_INTERVAL]
    for name in rolled:
        assert f"FROM (SELECT *, window_start AS minute FROM {tables.GOLD_STORED})" in views[name], name
        assert _selected(views[name]) == creates[name] == creates[tables.GOLD_STORED], name


def _final_view_queries() -> dict[str, str]:
    """Each materialized view's query after every migration (a later MODIFY QUERY replaces it)."""
    queries = {}
    for statement in _statements():
        if match := re.match(r"CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) TO \w+ AS\n", statement):
            queries[match.group(1)] = statement[match.end():]
        elif match := re.match(r"ALTER TABLE (\w+) MODIFY QUERY\n", statement):
            queries[match.group(1)] = statement[match.end():]
    return queries


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_every_exchange_dedups_into_silver_against_every_trade_silver_ever_received(exchange):
    """Silver forgets trades after the hot retention; trade_identities keeps them as long as Gold."""
    views = {name: query for name, query in _final_view_queries().items()
             if re.search(rf"\nFROM {tables.bronze(exchange)}\n", query)}
    assert len(views) == 1, views.keys()
    query = next(iter(views.values()))
    assert re.search(rf"NOT IN \(\s*SELECT symbol, trade_id\s*FROM {tables.TRADE_IDENTITIES}\s*"
                     rf"WHERE exchange = '{exchange}'", query), query
    assert query.rstrip().endswith("LIMIT 1 BY symbol, trade_id")


def test_trade_identities_are_recorded_from_silver_and_kept_as_long_as_gold():
    queries = _final_view_queries()
    assert any(re.search(rf"\nFROM {tables.SILVER}$", q) and "trade_id" in q for q in queries.values())
    wanted = migrations.wanted_tables(Settings(gold_retention_days=1234), migrations.discover())
    assert wanted[tables.TRADE_IDENTITIES].ttl == "toDateTime(trade_time) + INTERVAL 1234 DAY"
    assert wanted[tables.GOLD_STORED].ttl == "window_start + INTERVAL 1234 DAY"
def test_no_migrations_found_is_an_error_not_up_to_date(tmp_path):
    with pytest.raises(StreamappError, match=rf"no migrations \(NNNN_name.sql\) found in {tmp_path}"):
        migrations.discover(tmp_path)


def test_missing_package_data_names_the_file_and_the_fix():
    from streamapp import package_data

    with pytest.raises(StreamappError, match=r"captures/nope.jsonl.gz is missing from the installed streamapp.*pip install"):
        package_data.path("captures", "nope.jsonl.gz")
    assert package_data.path("stack", "pom.xml").is_file()
