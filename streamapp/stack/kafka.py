"""The local broker: Apache Kafka in single-node KRaft mode, run from jars fetched with Maven.

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


def data_dir(settings: Settings) -> Path:
    return settings.home / "kafka"


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


def server_properties(settings: Settings) -> str:
    host, port = settings.broker_host_port
    ctl = settings.kafka_controller_port
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{host}:{ctl}",
        f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{ctl}",
        f"advertised.listeners=PLAINTEXT://{host}:{port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data_dir(settings).resolve() / 'logs'}",
        # One node: topics are created explicitly by streamapp, never by accident.
        "auto.create.topics.enable=false",
        f"num.partitions={settings.topic_partitions}",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=10",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=10",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        # No waiting for more members: a single-node stack has them all.
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


def prepare(settings: Settings) -> list[str]:
    """Write config, format storage on first start, and return the broker's command line."""
    libs = ensure_jars(settings)
    root = data_dir(settings).resolve()
    root.mkdir(parents=True, exist_ok=True)
    props = root / "server.properties"
    props.write_text(server_properties(settings))
    (root / "log4j2.yaml").write_text(LOG4J2)
    java = ["java", f"-Xms{settings.kafka_heap}", f"-Xmx{settings.kafka_heap}",
            f"-Dlog4j2.configurationFile={root / 'log4j2.yaml'}", "-cp", f"{libs}/*"]
    if not (root / "logs" / "meta.properties").exists():
        result = subprocess.run(
            java + ["kafka.tools.StorageTool", "format", "-t", new_cluster_id(), "-c", str(props)],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise StreamappError(f"formatting Kafka storage in {root} failed: {result.stdout}{result.stderr}")
    return java + ["kafka.Kafka", str(props)]
