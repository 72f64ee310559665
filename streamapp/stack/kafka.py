"""The local broker: Apache Kafka in KRaft mode (one node, or a cluster of N), run from jars fetched with Maven.

The jars come from Maven Central on first use (``streamapp/stack/pom.xml``) into
``<cache_dir>/kafka-<version>/libs`` and are reused by every stack after that.
"""

from __future__ import annotations

import base64
import logging
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from streamapp import package_data
from streamapp.errors import StreamappError
from streamapp.settings import Settings

log = logging.getLogger(__name__)

LOG4J2 = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    # Warnings and errors, plus the lines that say the broker started and stopped.
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
      - name: kafka.server.BrokerServer
        level: INFO
"""


def libs_dir(settings: Settings) -> Path:
    return settings.cache_dir / f"kafka-{settings.kafka_version}" / "libs"


def data_dir(settings: Settings, node: int = 1) -> Path:
    """Node ``node``'s directory: ``kafka/`` for a one-node stack, ``kafka/broker-<node>/`` in a cluster."""
    root = settings.home / "kafka"
    return root if settings.stack_brokers == 1 else root / f"broker-{node}"


def controller_port(settings: Settings, node: int) -> int:
    return settings.kafka_controller_port + 2 * (node - 1)


def _cluster_record(settings: Settings) -> Path:
    return settings.home / "kafka" / "cluster"


def formatted_size(settings: Settings) -> int | None:
    """How many nodes the stack's data dir was formatted for (None: not formatted yet)."""
    record = _cluster_record(settings)
    if record.exists():
        return int(record.read_text().split()[1])
    return 1 if (settings.home / "kafka" / "logs" / "meta.properties").exists() else None  # older one-node stacks


def check_cluster_size(settings: Settings) -> None:
    """A data dir formatted for N nodes runs with N nodes: a quorum of 3 never forms with 1."""
    formatted = formatted_size(settings)
    if formatted is not None and formatted != settings.stack_brokers:
        raise StreamappError(
            f"the local stack in {settings.home} is a {formatted}-broker cluster, not {settings.stack_brokers}: "
            f"set STREAMAPP_STACK_BROKERS={formatted} (or --brokers {formatted}), or use another STREAMAPP_HOME"
        )


def cluster_id(settings: Settings) -> str:
    """The cluster's id, drawn once and shared by all its nodes (recorded with their number)."""
    record = _cluster_record(settings)
    if record.exists():
        return record.read_text().split()[0]
    record.parent.mkdir(parents=True, exist_ok=True)
    drawn = new_cluster_id()
    record.write_text(f"{drawn} {settings.stack_brokers}\n")
    return drawn


def ensure_jars(settings: Settings) -> Path:
    """Fetch the broker's jars with Maven unless they are cached already."""
    if shutil.which("java") is None:
        raise StreamappError("Java is missing: the local broker needs a JRE 17+ on PATH (apt-get install openjdk-17-jre-headless).")
    libs = libs_dir(settings)
    if (libs / f"kafka_2.13-{settings.kafka_version}.jar").exists():
        return libs
    if shutil.which("mvn") is None:
        raise StreamappError(
            f"Maven is missing and the Kafka {settings.kafka_version} jars are not cached in {libs}: "
            "install Maven (apt-get install maven) so `stack up` can fetch them once."
        )
    pom = package_data.path("stack", "pom.xml")
    log.info("fetching Apache Kafka %s jars from Maven Central into %s (first use only)", settings.kafka_version, libs)
    tmp = libs.with_name("libs.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    result = subprocess.run(
        [
            "mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
            f"-Dkafka.version={settings.kafka_version}",
            "-DincludeScope=runtime", f"-DoutputDirectory={tmp}",
        ],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise StreamappError(f"fetching Kafka {settings.kafka_version} with Maven failed:\n{tail}")
    tmp.rename(libs)
    return libs


def server_properties(settings: Settings, node: int = 1) -> str:
    host, port = settings.stack_broker_host_ports[node - 1]
    ctl = controller_port(settings, node)
    nodes = range(1, settings.stack_brokers + 1)
    voters = ",".join(f"{n}@{settings.stack_broker_host_ports[n - 1][0]}:{controller_port(settings, n)}" for n in nodes)
    # Internal topics as replicated as the user's (RF 3, min.insync 2 on a 3-node stack), so
    # group offsets and transactions survive a stopped node too.
    replicas, min_isr = min(settings.stack_brokers, 3), settings.min_insync_replicas
    return "\n".join([
        "process.roles=broker,controller",
        f"node.id={node}",
        f"controller.quorum.voters={voters}",
        f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{ctl}",
        f"advertised.listeners=PLAINTEXT://{host}:{port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data_dir(settings, node).resolve() / 'logs'}",
        # Topics are created explicitly by streamapp, never by accident.
        "auto.create.topics.enable=false",
        f"num.partitions={settings.topic_partitions}",
        f"default.replication.factor={replicas}",
        f"offsets.topic.replication.factor={replicas}",
        "offsets.topic.num.partitions=10",
        f"transaction.state.log.replication.factor={replicas}",
        f"transaction.state.log.min.isr={min(min_isr, replicas)}",
        "transaction.state.log.num.partitions=10",
        f"share.coordinator.state.topic.replication.factor={replicas}",
        f"share.coordinator.state.topic.min.isr={min(min_isr, replicas)}",
        # No waiting for more members: the group's workers join as they start.
        "group.initial.rebalance.delay.ms=0",
        "log.segment.bytes=67108864",
        "",
    ])


def new_cluster_id(draw: Callable[[], uuid.UUID] = uuid.uuid4) -> str:
    """A KRaft cluster id as ``kafka-storage random-uuid`` makes one: URL-safe base64 of a random UUID.

    One in 64 such strings starts with ``-``, which the storage tool's argument parser
    takes for an option (``argument --cluster-id/-t: expected one argument``); Kafka's
    ``Uuid.randomUuid`` draws again in that case, and so does this.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(draw().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def prepare(settings: Settings, node: int = 1) -> list[str]:
    """Write node ``node``'s config, format its storage on first start, and return its command line."""
    check_cluster_size(settings)
    libs = ensure_jars(settings)
    root = data_dir(settings, node).resolve()
    root.mkdir(parents=True, exist_ok=True)
    props = root / "server.properties"
    props.write_text(server_properties(settings, node))
    (root / "log4j2.yaml").write_text(LOG4J2)
    java = ["java", f"-Xms{settings.kafka_heap}", f"-Xmx{settings.kafka_heap}",
            f"-Dlog4j2.configurationFile={root / 'log4j2.yaml'}", "-cp", f"{libs}/*"]
    if not (root / "logs" / "meta.properties").exists():
        result = subprocess.run(
            java + ["kafka.tools.StorageTool", "format", "-t", cluster_id(settings), "-c", str(props)],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise StreamappError(f"formatting Kafka storage in {root} failed: {result.stdout}{result.stderr}")
    return java + ["kafka.Kafka", str(props)]
