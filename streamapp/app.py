"""The one Faust app: the normalizer worker.

Agents live in the ``agents`` package beside ``streamapp``: the app's ``autodiscover``
list names their modules, and ``app.discover()`` (``streamapp worker``, ``faust -A ... worker``)
imports them, so nothing in ``streamapp`` imports ``agents``. Configuration
is applied lazily (``on_configured``), so importing this module reads no
environment and connects nowhere:

    streamapp worker                       # or: faust -A streamapp.app worker -l info
"""

from __future__ import annotations

import os
import socket
from typing import Any

import faust
from prometheus_client import Gauge, start_http_server

from streamapp import groups
from streamapp.eos import App
from streamapp.settings import get_settings

AGENT_MODULES = ["agents.normalizer"]

# eos.App: Faust with a batch drain loop; every agent consumes through eos.process_batches.
app = App(groups.NORMALIZER, autodiscover=AGENT_MODULES, origin="streamapp")


@app.on_configured.connect
def _configure(app: faust.App, conf: Any, **kwargs: Any) -> None:
    configure(conf)


def configure(conf: Any) -> None:
    """The worker's Faust settings from ours (also used by the pass-through apps of bench/)."""
    settings = get_settings()
    conf.broker = [f"kafka://{server}" for server in settings.kafka_bootstrap_servers.split(",")]
    conf.broker_credentials = _credentials(settings)
    # Each raw record's output (normalized trades or a DLQ record) is produced in a
    # Kafka transaction together with the consumer offset: a crash neither loses
    # nor duplicates output for read_committed consumers (ClickHouse's Kafka engine,
    # librdkafka's default).
    conf.processing_guarantee = "exactly_once"
    # One client id per process: the consumer group's description (kafka-consumer-groups
    # --describe, AdminClient.describe_consumer_groups) says which worker owns which partitions.
    conf.broker_client_id = f"{groups.NORMALIZER}-{socket.gethostname()}-{os.getpid()}"
    conf.topic_partitions = settings.topic_partitions
    conf.topic_replication_factor = settings.replication_factor
    conf.store = "memory://"  # no tables: nothing to keep locally
    conf.web_host = "127.0.0.1"
    conf.web_port = settings.worker_web_port
    conf.datadir = str(settings.home / "worker")
    conf.consumer_auto_offset_reset = "earliest"
    # A worker that stops heartbeating (killed, hung) loses its partitions to the others after this long.
    conf.broker_session_timeout = settings.worker_session_timeout_s
    conf.broker_heartbeat_interval = min(3.0, settings.worker_session_timeout_s / 3)  # 3.0: Faust's default
    # Commit (and so end the transaction) often: the normalized records become
    # visible to read_committed consumers only then, so this bounds latency.
    conf.broker_commit_every = 1000
    conf.broker_commit_interval = 0.05
    conf.producer_linger_ms = 5
    conf.producer_acks = -1


CONSUMER_LAG = Gauge(
    "streamapp_normalizer_consumer_lag", "Records in a raw partition not yet read by this worker.",
    ["topic", "partition"],
)


@app.task
async def _serve_metrics() -> None:
    settings = get_settings()
    start_http_server(settings.worker_metrics_port, addr=settings.metrics_host)


@app.timer(5.0)
async def _measure_lag() -> None:
    consumer = app.consumer
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        read = consumer._read_offset.get(tp)  # faust keeps the last offset handed to a stream
        if highwater is not None:
            CONSUMER_LAG.labels(tp.topic, tp.partition).set(max(0, highwater - (read + 1 if read is not None else 0)))


def _credentials(settings) -> Any:
    if settings.kafka_sasl_mechanism and settings.kafka_sasl_username and settings.kafka_sasl_password:
        from faust.auth import SASLCredentials

        return SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
        )
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL") and settings.kafka_ssl_cafile:
        from faust.auth import SSLCredentials

        return SSLCredentials(cafile=str(settings.kafka_ssl_cafile))
    return None
