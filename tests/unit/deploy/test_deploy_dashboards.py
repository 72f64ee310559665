"""Prometheus and Grafana config in deploy/ against the code: valid files, consistent uids, and only
metrics that streamapp exports (read from prometheus_client registries after importing the
modules that define them), only tables that streamapp declares."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest
import yaml

from streamapp import tables as table_names
from streamapp.exchanges import EXCHANGES
from streamapp.settings import Settings

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
ROOT = DEPLOY.parent
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
DATASOURCE_FILES = sorted((DEPLOY / "grafana" / "provisioning" / "datasources").glob("*.yaml"))
PROVIDER_FILES = sorted((DEPLOY / "grafana" / "provisioning" / "dashboards").glob("*.yaml"))
PROMETHEUS_FILES = sorted(DEPLOY.glob("prometheus*.yml"))
RULES = DEPLOY.parent / "streamapp" / "stack" / "prometheus-rules.yml"  # package data: the local stack loads it too

# Series Prometheus makes itself for every target.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "inf", "nan", "le"}


def _sample_names(family) -> set[str]:
    name = family.name
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("", "_sum", "_count", "_created"), "info": ("_info",),
                "gaugehistogram": ("_bucket", "_gsum", "_gcount")}.get(family.type, ("",))
    return {name + s for s in suffixes}


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """Every series name streamapp's processes can export."""
    from prometheus_client import REGISTRY

    import streamapp.app  # noqa: F401 - the worker's lag gauge
    import streamapp.dispatch  # noqa: F401 - the normalizer's counters and histograms
    import streamapp.feeds.metrics  # noqa: F401 - the feed handlers
    from streamapp.simulator.server import Simulator  # its metrics live on a registry per instance

    names: set[str] = set()
    for registry in (REGISTRY, Simulator({}).registry):
        for family in registry.collect():
            names |= _sample_names(family)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords, labels and numbers dropped)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors (and Grafana's $__rate_interval inside them)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    text = re.sub(r"(?<![\w:])\d+(\.\d+)?([eE][+-]?\d+)?", " ", text)  # numbers
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        if re.match(r"\s*\(", text[m.end():]) or m.group().lower() in PROMQL_WORDS:
            continue
        names.add(m.group())
    return names


@pytest.mark.parametrize("expr, names", [
    ('up{job=~"streamapp-.*"} == 0', {"up"}),
    ("sum by (exchange, le) (rate(streamapp_feed_publish_latency_seconds_bucket[$__rate_interval]))",
     {"streamapp_feed_publish_latency_seconds_bucket"}),
    ("histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m]))) > 1e-3", {"a_bucket"}),
    ("sum(rate(a_total[5m])) > 0.05 * sum without (x) (rate(b_total[5m])) and on (exchange) c", {"a_total", "b_total",
                                                                                                  "c"}),
])
def test_metric_name_extraction(expr, names):
    assert metric_names(expr) == names


def test_exported_names_are_what_the_code_declares(exported):
    assert {"streamapp_feed_frames_received_total", "streamapp_normalizer_rejected_total",
            "streamapp_normalizer_consumer_lag", "streamapp_receive_to_publish_seconds_bucket",
            "streamapp_simulator_frames_sent_total"} <= exported
    assert "streamapp_feed_frames_received" not in exported  # counters are read as <name>_total


# --- Prometheus --------------------------------------------------------------------------

def _yaml(path: Path):
    return yaml.safe_load(path.read_text())


def test_prometheus_files_exist_and_parse():
    names = {p.name for p in PROMETHEUS_FILES}
    assert {"prometheus.yml", "prometheus-local.yml"} <= names
    for path in [*PROMETHEUS_FILES, RULES]:
        assert isinstance(_yaml(path), dict), path


def _targets(config) -> dict[str, list[str]]:
    return {job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
            for job in config["scrape_configs"]}


def _compose():
    return _yaml(ROOT / "compose.yaml")


def test_compose_prometheus_scrapes_every_streamapp_process_by_service_name():
    targets = _targets(_yaml(DEPLOY / "prometheus.yml"))
    services = _compose()["services"]
    scraped = {t for job, ts in targets.items() if job.startswith("streamapp-") for t in ts}
    assert {"worker:9102", "feed-binance:9101", "feed-binanceusdm:9104", "feed-kraken:9103"} <= scraped
    assert {f"feed-{e}" for e in EXCHANGES} <= {t.split(":")[0] for t in scraped}  # a feed per exchange
    for target in scraped:
        service, port = target.split(":")
        assert service in services, f"{target}: no compose service {service}"
        published = {p.split(":")[-1] for p in services[service].get("ports", [])}
        assert port in published, f"{target}: compose service {service} exposes {published}"
    # every long-running streamapp service in compose is scraped
    for name, svc in services.items():
        command = svc.get("command") or []
        if command[:1] in (["worker"], ["feed"], ["exchange"]):
            assert any(t.startswith(f"{name}:") for t in scraped), f"compose service {name} is not scraped"


def test_compose_mounts_prometheus_and_grafana_config():
    services = _compose()["services"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]
    grafana = services["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    mount = next(v.split(":")[1] for v in grafana if v.startswith("./deploy/grafana/dashboards:"))
    for path in PROVIDER_FILES:
        assert [p["options"]["path"] for p in _yaml(path)["providers"]] == [mount]


def test_local_prometheus_scrapes_the_settings_default_ports():
    fields = Settings.model_fields
    ports = {fields[f].default for f in ("worker_metrics_port", "feed_metrics_port", "kraken_feed_metrics_port",
                                         "binanceusdm_feed_metrics_port", "simulator_port")}
    targets = _targets(_yaml(DEPLOY / "prometheus-local.yml"))
    scraped = {t for job, ts in targets.items() if job.startswith("streamapp-") for t in ts}
    assert scraped == {f"127.0.0.1:{p}" for p in ports}
    # same jobs in both stacks, so the same dashboards work on both
    assert set(targets) == set(_targets(_yaml(DEPLOY / "prometheus.yml")))


def test_rule_files_are_found_by_both_configs():
    local = _yaml(DEPLOY / "prometheus-local.yml")["rule_files"]
    assert [(DEPLOY / r).resolve() for r in local] == [RULES]
    mounts = [v.split(":") for v in _compose()["services"]["prometheus"]["volumes"] if v.startswith("./")]
    inside = [target for source, target, *_ in mounts if source == f"./{RULES.relative_to(DEPLOY.parent)}"]
    assert inside, f"compose.yaml does not mount {RULES.relative_to(DEPLOY.parent)} into Prometheus"
    compose = _yaml(DEPLOY / "prometheus.yml")["rule_files"]
    assert any(fnmatch.fnmatch(inside[0], pattern) for pattern in compose), (inside, compose)


def _rule_exprs() -> list[tuple[str, str]]:
    found = []
    for path in [RULES]:
        for group in (_yaml(path) or {}).get("groups", []):
            for rule in group["rules"]:
                assert ("alert" in rule) != ("record" in rule), rule
                assert "expr" in rule, rule
                found.append((f"{path.name}:{rule.get('alert') or rule.get('record')}", rule["expr"]))
    return found


def test_rules_read_only_exported_metrics(exported):
    rules = _rule_exprs()
    assert len(rules) >= 5
    for where, expr in rules:
        unknown = metric_names(expr) - exported - SYNTHETIC
        assert not unknown, f"{where}: {sorted(unknown)} not exported by streamapp"


# --- Grafana -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def datasources() -> dict[str, str]:
    """uid -> type of the provisioned datasources."""
    assert DATASOURCE_FILES
    found: dict[str, str] = {}
    for path in DATASOURCE_FILES:
        config = _yaml(path)
        assert config["apiVersion"] == 1
        for ds in config["datasources"]:
            assert {"name", "uid", "type"} <= ds.keys(), ds
            assert ds["uid"] not in found, f"duplicate datasource uid {ds['uid']}"
            found[ds["uid"]] = ds["type"]
    assert set(found.values()) == {"prometheus", "grafana-clickhouse-datasource"}
    return found


def _dashboards() -> list[tuple[Path, dict]]:
    assert len(DASHBOARDS) >= 2
    return [(p, json.loads(p.read_text())) for p in DASHBOARDS]


def _panels(dashboard: dict):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _targets_of(dashboard: dict):
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def _ds(obj) -> dict:
    return obj.get("datasource") or {}


def test_dashboards_have_required_keys_and_unique_ids():
    uids = set()
    for path, d in _dashboards():
        assert {"uid", "title", "panels", "schemaVersion", "time", "templating"} <= d.keys(), path
        assert d["uid"] not in uids and len(d["uid"]) <= 40
        uids.add(d["uid"])
        ids = [p["id"] for p in _panels(d)]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in _panels(d):
            assert {"type", "title", "gridPos"} <= panel.keys(), (path.name, panel.get("title"))
            g = panel["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24, (path.name, panel["title"])
            if panel["type"] != "row":
                assert panel.get("targets"), (path.name, panel["title"])


def test_every_datasource_reference_is_provisioned(datasources):
    for path, d in _dashboards():
        refs = [_ds(p) for p in _panels(d) if p["type"] != "row"]
        refs += [_ds(t) for _p, t in _targets_of(d)]
        refs += [_ds(v) for v in d["templating"]["list"] if v["type"] == "query"]
        for ref in refs:
            assert ref.get("uid") in datasources, (path.name, ref)
            assert ref.get("type") == datasources[ref["uid"]], (path.name, ref)


def test_dashboard_promql_reads_only_exported_metrics(exported):
    seen = 0
    for path, d in _dashboards():
        for panel, target in _targets_of(d):
            if _ds(target).get("type") != "prometheus":
                continue
            seen += 1
            unknown = metric_names(target["expr"]) - exported - SYNTHETIC
            assert not unknown, f"{path.name} / {panel['title']}: {sorted(unknown)} not exported by streamapp"
    assert seen >= 15


def _sql_tables(sql: str, intervals=table_names.INTERVALS) -> set[str]:
    names = set()
    for interval in intervals:
        text = sql.replace("${interval}", interval)
        names |= set(re.findall(r"\bFROM\s+([A-Za-z_][A-Za-z0-9_]*)", text, re.IGNORECASE))
    return names


def test_dashboard_sql_reads_only_declared_tables():
    declared = {table_names.SILVER, table_names.KAFKA_ERRORS, *table_names.CANDLE_VIEWS, *table_names.GOLD_TABLES,
                *table_names.BRONZE_TABLES}
    sqls = []
    for path, d in _dashboards():
        sqls += [(path.name, t["rawSql"]) for _p, t in _targets_of(d) if "rawSql" in t]
        sqls += [(path.name, v["query"]) for v in d["templating"]["list"] if v["type"] == "query"]
    assert sqls
    for name, sql in sqls:
        tables = _sql_tables(sql)
        assert tables and tables <= declared, (name, sql, tables - declared)
        assert not re.search(r"\b(INSERT|ALTER|DROP|CREATE|TRUNCATE)\b", sql, re.IGNORECASE), sql


def test_dashboard_variables_are_defined():
    for path, d in _dashboards():
        defined = {v["name"] for v in d["templating"]["list"]}
        text = json.dumps(d["panels"]) + json.dumps(d["templating"])
        used = set(re.findall(r"\$\{(\w+)\}", text)) | set(re.findall(r"\$([A-Za-z]\w*)", text))
        used = {u for u in used if not u.startswith("__")}
        assert used <= defined, (path.name, used - defined)
        intervals = [v for v in d["templating"]["list"] if v["name"] == "interval"]
        if intervals:
            assert intervals[0]["query"].split(",") == list(table_names.INTERVALS)


def test_the_dashboards_cover_the_issue():
    titles = " ".join(p["title"].lower() for _path, d in _dashboards() for p in _panels(d))
    for topic in ("throughput", "lag", "reject", "freshness", "reconnect", "gaps"):
        assert topic in titles, topic
    types = {p["type"] for _path, d in _dashboards() for p in _panels(d)}
    assert "candlestick" in types


def test_rules_cover_lag_rejects_freshness_and_gaps():
    used = set().union(*(metric_names(expr) for _where, expr in _rule_exprs()))
    assert {"streamapp_normalizer_consumer_lag", "streamapp_normalizer_rejected_total",
            "streamapp_receive_to_publish_seconds_bucket", "streamapp_normalizer_trades_total",
            "streamapp_feed_gap_trades_total"} <= used


def test_target_down_tolerates_the_profile_not_running():
    """compose scrapes live and offline feeds but runs one profile: the alert groups them by exchange."""
    rule = next(expr for where, expr in _rule_exprs() if where.endswith(":StreamappTargetDown"))
    assert rule.startswith("max by (job, exchange) (up{")
    feeds = {(t.split(":")[0].removesuffix("-offline"), sc["labels"]["exchange"])
             for job in _yaml(DEPLOY / "prometheus.yml")["scrape_configs"] if job["job_name"] == "streamapp-feed"
             for sc in job["static_configs"] for t in sc["targets"]}
    assert feeds == {(f"feed-{e}", e) for e in EXCHANGES}
