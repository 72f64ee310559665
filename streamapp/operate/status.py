"""``streamapp status``: the platform on one screen, from outside (nothing joins a group or writes).

Broker (reachable, brokers), pipeline topics (partitions, end offsets), consumer-group lag
(end offset - committed offset per partition, summed per topic; read with the admin API,
never by joining the group), registry subjects, warehouse health and data freshness per
exchange and symbol. An unreachable part is one line, and makes the report unhealthy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from streamapp import groups, tables, topics
from streamapp.clients.clickhouse import connect, root_cause
from streamapp.errors import StreamappError
from streamapp.exchanges import EXCHANGES
from streamapp.settings import Settings

TIMEOUT_S = 3.0
_WINDOW = re.compile(r"([0-9]+)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_window(text: str) -> int | None:
    """``15m``, ``1h``, ``7d``, ``90s`` -> seconds; ``all`` -> None (no limit)."""
    value = text.strip().lower()
    if value == "all":
        return None
    match = _WINDOW.fullmatch(value)
    if match is None or int(match[1]) == 0:
        raise StreamappError(f"--window {text!r}: use all or a positive duration like 90s, 15m, 1h, 7d")
    return int(match[1]) * _UNIT_S[match[2]]


def group_topics() -> dict[str, tuple[str, ...]]:
    """The pipeline's consumer groups and the topics each reads."""
    return {groups.NORMALIZER: topics.RAW_TOPICS} | {groups.clickhouse(e): (topics.normalized(e),) for e in EXCHANGES}


def lag(ends: dict[int, tuple[int, int]], committed: dict[int, int]) -> dict:
    """Per topic: ``ends`` partition -> (low, high) watermarks, ``committed`` partition -> offset (absent or
    negative: nothing committed, so all that is retained counts as lag). On a transactional topic a
    consumer that read everything may show a lag of 1: the commit marker after its last record."""
    total_committed = total_lag = 0
    uncommitted = 0
    for p, (low, high) in ends.items():
        offset = committed.get(p, -1)
        if offset < 0:
            uncommitted += high > low  # an empty partition has nothing to commit
            total_lag += high - low
        else:
            total_committed += offset
            total_lag += max(0, high - offset)
    return {"committed": total_committed, "end": sum(h for _, h in ends.values()), "lag": total_lag,
            "partitions_without_commit": uncommitted}


@dataclass
class _Kafka:
    admin: AdminClient
    consumer: Consumer

    def close(self) -> None:
        self.consumer.close()


def _kafka(settings: Settings) -> _Kafka:
    quiet = {"socket.timeout.ms": int(TIMEOUT_S * 1000), "log_level": 0}
    config = settings.kafka_client_config() | quiet
    return _Kafka(AdminClient(config), Consumer(config | {"group.id": "streamapp-status", "enable.auto.commit": False}))


def broker_report(settings: Settings, kafka: _Kafka) -> tuple[dict, object | None]:
    try:
        meta = kafka.admin.list_topics(timeout=TIMEOUT_S)
    except KafkaException as exc:
        return {"reachable": False, "address": settings.kafka_bootstrap_servers,
                "error": f"cannot reach the broker at {settings.kafka_bootstrap_servers}: {exc.args[0].str()}"}, None
    return {"reachable": True, "address": settings.kafka_bootstrap_servers, "controller": meta.controller_id,
            "brokers": [{"id": b.id, "host": b.host, "port": b.port} for b in meta.brokers.values()]}, meta


def topics_report(kafka: _Kafka, meta) -> tuple[list[dict], dict[str, dict[int, tuple[int, int]]]]:
    rows, watermarks = [], {}
    for name in topics.PIPELINE_TOPICS:
        found = meta.topics.get(name)
        if found is None or found.error is not None:
            rows.append({"topic": name, "exists": False})
            continue
        marks = {p: kafka.consumer.get_watermark_offsets(TopicPartition(name, p), timeout=TIMEOUT_S)
                 for p in sorted(found.partitions)}
        watermarks[name] = marks
        rows.append({"topic": name, "exists": True, "partitions": len(marks),
                     "end_offsets": {str(p): high for p, (_, high) in marks.items()},
                     # offsets, not records: transactional topics hold commit markers too
                     "retained_offsets": sum(high - low for low, high in marks.values())})
    return rows, watermarks


def groups_report(kafka: _Kafka, watermarks: dict[str, dict[int, tuple[int, int]]]) -> list[dict]:
    wanted = group_topics()
    states: dict[str, tuple[str, int]] = {}
    try:
        for group, future in kafka.admin.describe_consumer_groups(list(wanted), request_timeout=TIMEOUT_S).items():
            try:
                described = future.result()
                states[group] = (described.state.name.lower(), len(described.members))
            except KafkaException:
                pass
    except KafkaException:
        pass
    rows = []
    for group, its_topics in wanted.items():
        state, members = states.get(group, ("unknown", 0))
        row: dict = {"group": group, "state": state, "members": members, "topics": []}
        try:
            future = kafka.admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=TIMEOUT_S)[group]
            committed: dict[str, dict[int, int]] = {}
            for tp in future.result().topic_partitions or []:
                committed.setdefault(tp.topic, {})[tp.partition] = tp.offset
        except KafkaException as exc:
            row["error"] = f"cannot read {group}'s committed offsets: {exc.args[0].str()}"
            rows.append(row)
            continue
        for topic in its_topics:
            if topic in watermarks:
                row["topics"].append({"topic": topic} | lag(watermarks[topic], committed.get(topic, {})))
            else:
                row["topics"].append({"topic": topic, "missing": True})
        row["lag"] = sum(t.get("lag", 0) for t in row["topics"])
        rows.append(row)
    return rows


def group_lags(settings: Settings) -> dict[str, int | None]:
    """Each pipeline consumer group's lag (end - committed, summed over its topics; None: unreadable)."""
    kafka = _kafka(settings)
    try:
        _, meta = broker_report(settings, kafka)
        if meta is None:
            return dict.fromkeys(group_topics())
        _, watermarks = topics_report(kafka, meta)
        return {row["group"]: row.get("lag") for row in groups_report(kafka, watermarks)}
    finally:
        kafka.close()


def registry_report(settings: Settings) -> dict:
    auth = None
    if settings.schema_registry_username and settings.schema_registry_password:
        auth = (settings.schema_registry_username, settings.schema_registry_password.get_secret_value())
    url = settings.schema_registry_url.rstrip("/")
    try:
        response = httpx.get(f"{url}/subjects", timeout=TIMEOUT_S, auth=auth)
        response.raise_for_status()
        return {"reachable": True, "url": settings.schema_registry_url, "subjects": sorted(response.json())}
    except (httpx.HTTPError, ValueError) as exc:
        return {"reachable": False, "url": settings.schema_registry_url,
                "error": f"cannot read subjects from the schema registry at {url}: {root_cause(exc)}"}


FRESHNESS_SQL = """
SELECT exchange, symbol, count() AS trades,
       max(trade_time) AS last_trade_time, max(ingest_time) AS last_ingest_time,
       dateDiff('microsecond', max(trade_time), now64(6)) / 1e6 AS trade_age_s,
       dateDiff('microsecond', max(ingest_time), now64(6)) / 1e6 AS ingest_age_s
FROM {table}
{where}
GROUP BY exchange, symbol
ORDER BY exchange, symbol
"""


def warehouse_report(settings: Settings, window_s: int | None) -> dict:
    host, port = settings.clickhouse_host_port
    report: dict = {"address": f"{host}:{port}", "window_s": window_s}
    try:
        client = connect(settings, connect_timeout=TIMEOUT_S, send_receive_timeout=30)
    except StreamappError as exc:
        return report | {"reachable": False, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - any failure to connect is "unreachable", said in one line
        return report | {"reachable": False, "error": f"cannot reach ClickHouse at {host}:{port}: {root_cause(exc)}"}
    try:
        report |= {"reachable": True, "version": client.command("SELECT version()")}
        where = "" if window_s is None else f"WHERE ingest_time >= now64(6) - INTERVAL {int(window_s)} SECOND"
        result = client.query(FRESHNESS_SQL.format(table=tables.SILVER, where=where))
        report["freshness"] = [dict(zip(result.column_names, row)) for row in result.result_rows]
    except Exception as exc:  # noqa: BLE001
        report |= {"error": f"reading {tables.SILVER} failed: {root_cause(exc)} (migrations applied? "
                            "`streamapp db migrate`)"}
    finally:
        client.close()
    return report


def collect(settings: Settings, window_s: int | None = 3600) -> dict:
    """Everything ``streamapp status`` shows, as plain data; ``healthy`` is False if any part is unreachable."""
    kafka = _kafka(settings)
    try:
        broker, meta = broker_report(settings, kafka)
        if meta is not None:
            topic_rows, watermarks = topics_report(kafka, meta)
            group_rows = groups_report(kafka, watermarks)
        else:
            topic_rows, group_rows = None, None
    finally:
        kafka.close()
    registry = registry_report(settings)
    warehouse = warehouse_report(settings, window_s)
    healthy = broker["reachable"] and registry["reachable"] and warehouse.get("reachable") and "error" not in warehouse
    from streamapp.coldtier import status as cold_tier  # imports pyiceberg: only when status runs

    cold = cold_tier.report(settings) if warehouse.get("reachable") else {"error": "warehouse unreachable"}
    return {"healthy": bool(healthy), "broker": broker, "topics": topic_rows, "groups": group_rows,
            "registry": registry, "warehouse": warehouse, "cold_tier": cold}


# --- one screen --------------------------------------------------------------------------------------

def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def render(report: dict, console) -> None:
    """``report`` from :func:`collect` as tables on a rich ``console``."""
    from rich.table import Table

    bad = "[bold red]UNREACHABLE[/]"
    broker, registry, warehouse = report["broker"], report["registry"], report["warehouse"]
    services = Table(title="services", title_justify="left", show_edge=False)
    for column in ("service", "address", "state", "detail"):
        services.add_column(column)
    if broker["reachable"]:
        ids = ", ".join(f"{b['id']}@{b['host']}:{b['port']}" for b in broker["brokers"])
        services.add_row("broker", broker["address"], "[green]ok[/]", f"{len(broker['brokers'])} broker(s): {ids}")
    else:
        services.add_row("broker", broker["address"], bad, broker["error"])
    if registry["reachable"]:
        services.add_row("registry", registry["url"], "[green]ok[/]", f"{len(registry['subjects'])} subjects")
    else:
        services.add_row("registry", registry["url"], bad, registry["error"])
    if not warehouse.get("reachable"):
        services.add_row("warehouse", warehouse["address"], bad, warehouse["error"])
    elif "error" in warehouse:
        services.add_row("warehouse", warehouse["address"], "[bold red]ERROR[/]", warehouse["error"])
    else:
        services.add_row("warehouse", warehouse["address"], "[green]ok[/]", f"ClickHouse {warehouse['version']}")
    console.print(services)

    if report["topics"] is None:
        console.print("topics, consumer groups: [bold red]unknown[/] (broker unreachable)")
    else:
        table = Table(title="topics", title_justify="left", show_edge=False)
        for column in ("topic", "partitions", "end offsets", "retained offsets"):
            table.add_column(column, justify="left" if column in ("topic", "end offsets") else "right")
        for row in report["topics"]:
            if not row["exists"]:
                table.add_row(row["topic"], "-", "[yellow]missing[/] (streamapp pipeline up creates it)", "-")
            else:
                ends = " ".join(f"{p}:{o}" for p, o in row["end_offsets"].items())
                table.add_row(row["topic"], str(row["partitions"]), ends, f"{row['retained_offsets']:,}")
        console.print(table)

        table = Table(title="consumer groups (lag = end - committed)", title_justify="left", show_edge=False)
        for column in ("group", "state", "members", "topic", "committed", "end", "lag"):
            table.add_column(column, justify="right" if column in ("members", "committed", "end", "lag") else "left")
        for row in report["groups"]:
            if "error" in row:
                table.add_row(row["group"], row["state"], str(row["members"]), f"[red]{row['error']}[/]", "", "", "")
                continue
            for t in row["topics"]:
                if t.get("missing"):
                    table.add_row(row["group"], row["state"], str(row["members"]), t["topic"], "-", "-", "missing")
                else:
                    note = f" ({t['partitions_without_commit']} p. uncommitted)" if t["partitions_without_commit"] else ""
                    table.add_row(row["group"], row["state"], str(row["members"]), t["topic"], f"{t['committed']:,}",
                                  f"{t['end']:,}", f"{t['lag']:,}{note}")
        console.print(table)

    if registry["reachable"]:
        console.print(f"[bold]registry subjects[/]: {', '.join(registry['subjects']) or '(none)'}")

    if warehouse.get("reachable") and "freshness" in warehouse:
        window = "all data" if warehouse["window_s"] is None else f"ingested in the last {_age(warehouse['window_s'])}"
        table = Table(title=f"freshness ({tables.SILVER}, {window})", title_justify="left", show_edge=False)
        for column in ("exchange", "symbol", "trades", "last trade time", "trade age", "ingest age"):
            table.add_column(column, justify="right" if column in ("trades", "trade age", "ingest age") else "left")
        for row in warehouse["freshness"]:
            table.add_row(row["exchange"], row["symbol"], f"{row['trades']:,}", str(row["last_trade_time"]),
                          _age(row["trade_age_s"]), _age(row["ingest_age_s"]))
        if not warehouse["freshness"]:
            table.add_row("-", "-", "0", "no trades in the window", "-", "-")
        console.print(table)
    _render_cold_tier(report.get("cold_tier"), console)
    console.print("[green]healthy[/]" if report["healthy"] else "[bold red]UNHEALTHY[/]: see the lines above")


def _render_cold_tier(cold: dict | None, console) -> None:
    """Offload lag and TTL warnings (the cold tier never makes the report unhealthy)."""
    if not cold:
        return
    if "error" in cold:
        console.print(f"[bold]cold tier[/] ({cold.get('catalog', '-')}): [yellow]{cold['error']}[/]")
        return
    console.print(f"[bold]cold tier[/] ({cold['catalog']}): {cold['hours_offloaded']} hours offloaded, "
                  f"{cold['hours_due']} due, {cold['hours_open']} open; offload lag {_age(cold['lag_s'])}")
    if cold["hours_expired"]:
        console.print(f"[bold red]warning[/]: {cold['hours_expired']} hour(s) were never offloaded and the hot "
                      "tier's TTL may already have deleted part of them")
    for hour in cold["at_risk"]:
        console.print(f"[bold yellow]warning[/]: hour {hour['hour']} is not offloaded and the hot tier's TTL "
                      f"deletes it from {hour['deleted_from']}: run `streamapp offload`")
