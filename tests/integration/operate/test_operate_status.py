"""`streamapp status` against the real stack: healthy exits 0 with every section; a closed port exits 1."""

from __future__ import annotations

import json
import time

import pytest

from streamapp import groups, tables, topics
from streamapp.clients.kafka import ensure_topics
from tests.integration.processes import free_port
from tests.cli import invoke

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipeline_topics(migrated):
    ensure_topics(migrated, topics.PIPELINE_TOPICS)
    return migrated


def status(*args: str, env: dict | None = None):
    return invoke("status", *args, env=env)


def test_a_healthy_stack_exits_0_and_shows_every_section(pipeline_topics):
    result = status("--window", "all")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for expected in ("services", "broker", "registry", "warehouse", "topics", "consumer groups", groups.NORMALIZER,
                     *groups.CLICKHOUSE_GROUPS, *topics.PIPELINE_TOPICS, "registry subjects",
                     f"freshness ({tables.SILVER}, all data)", "healthy"):
        assert expected in out, expected
    assert "UNREACHABLE" not in out and "Traceback" not in out


def test_json_parses_and_agrees_with_the_broker(pipeline_topics):
    result = status("--format", "json", "--window", "15m")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["healthy"] is True
    assert report["broker"]["reachable"] and report["broker"]["brokers"]
    assert [t["topic"] for t in report["topics"]] == list(topics.PIPELINE_TOPICS)
    assert all(t["exists"] and t["partitions"] >= 1 for t in report["topics"])
    by_group = {g["group"]: g for g in report["groups"]}
    assert set(by_group) == {groups.NORMALIZER, *groups.CLICKHOUSE_GROUPS}
    ends = {t["topic"]: sum(t["end_offsets"].values()) for t in report["topics"]}
    for g in by_group.values():
        for t in g["topics"]:
            assert t["end"] == ends[t["topic"]]
            assert 0 <= t["lag"] <= t["end"]
        assert g["lag"] == sum(t["lag"] for t in g["topics"])
    assert report["registry"]["reachable"] and isinstance(report["registry"]["subjects"], list)
    warehouse = report["warehouse"]
    assert warehouse["reachable"] and warehouse["window_s"] == 900 and isinstance(warehouse["freshness"], list)
    for row in warehouse["freshness"]:
        assert {"exchange", "symbol", "trades", "trade_age_s", "ingest_age_s"} <= set(row)


@pytest.mark.parametrize(("variable", "message"), [
    ("STREAMAPP_KAFKA_BOOTSTRAP_SERVERS", "cannot reach the broker at 127.0.0.1:{port}"),
    ("STREAMAPP_CLICKHOUSE_URL", "cannot reach ClickHouse at 127.0.0.1:{port}"),
    ("STREAMAPP_SCHEMA_REGISTRY_URL", "cannot read subjects from the schema registry at http://127.0.0.1:{port}"),
])
def test_a_closed_port_exits_1_with_a_clear_line(stack, variable, message):
    port = free_port()
    value = f"127.0.0.1:{port}" if variable == "STREAMAPP_KAFKA_BOOTSTRAP_SERVERS" else f"http://127.0.0.1:{port}"
    started = time.monotonic()
    result = status(env={variable: value})
    assert time.monotonic() - started < 20
    assert result.exit_code == 1, result.output
    flat = " ".join(result.stdout.split())
    assert message.format(port=port) in flat, result.stdout
    assert "UNHEALTHY" in result.stdout and "Traceback" not in result.output

    as_json = status("--format", "json", env={variable: value})
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["healthy"] is False
    assert any(message.format(port=port) in (part or {}).get("error", "")
               for part in (report["broker"], report["registry"], report["warehouse"]))
