"""The one reader of the environment: every setting, its default and its variable.

Each field is read from ``STREAMAPP_<FIELD>`` (upper case), e.g.
``STREAMAPP_KAFKA_BOOTSTRAP_SERVERS=broker:9092``. Defaults point at the local
stack on loopback; pointing the same code at compose or a cluster is a matter
of settings only. Nothing reads ``os.environ`` but this module, and importing
it reads nothing: call :func:`get_settings`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamapp.exchanges import BINANCE, BINANCEUSDM, KRAKEN, REST_URLS, WS_URLS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STREAMAPP_", extra="ignore")

    # --- where state lives -------------------------------------------------
    home: Path = Field(Path(".stack"), description="Local stack data dir (data, logs, pid files).")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "streamapp",
        description="Downloads kept across stacks (the Kafka jars), outside the repo.",
    )

    # --- broker ------------------------------------------------------------
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: str = Field("PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
    kafka_sasl_mechanism: str | None = Field(None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.")
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    topic_partitions: int = Field(3, ge=1, description="Partitions of the topics streamapp creates.")
    topic_replication_factor: int | None = Field(
        None, ge=1, description="Replicas of the topics streamapp creates; default: 3 on a local stack of 3+ brokers, else 1."
    )
    topic_min_insync_replicas: int | None = Field(
        None, ge=1, description="min.insync.replicas of those topics; default: 2 when they have 3+ replicas, else 1."
    )
    raw_retention_ms: int = Field(7 * 24 * 3600 * 1000, description="Retention of raw and normalized topics.")
    dlq_retention_ms: int = Field(30 * 24 * 3600 * 1000, description="Retention of the dead-letter topic.")

    # --- schema registry ---------------------------------------------------
    schema_registry_url: str = "http://127.0.0.1:8081"
    schema_registry_username: str | None = None
    schema_registry_password: SecretStr | None = None

    # --- warehouse (ClickHouse over HTTP) ------------------------------------
    clickhouse_url: str = Field(
        "http://127.0.0.1:8123", description="ClickHouse HTTP DSN, e.g. https://user:pass@host:8443/db."
    )
    # The Kafka engine runs inside ClickHouse, whose view of the network can differ
    # from ours (in compose: redpanda:9092). Empty means "same as ours".
    clickhouse_kafka_broker_list: str = ""
    clickhouse_schema_registry_url: str = ""
    # --- the local stack's warehouse server (user and password: those of clickhouse_url) ---
    clickhouse_readonly_user: str = Field(
        "", description="A read-only warehouse user for dashboards (readonly=2: reads and settings, no writes)."
    )
    clickhouse_readonly_password: SecretStr | None = None
    warehouse_max_queries: int = Field(16, ge=1, description="Queries the local warehouse runs at once.")

    hot_retention_days: int = Field(30, ge=1, description="TTL of Bronze and Silver rows in the hot tier.")
    gold_retention_days: int = Field(3650, ge=1, description="TTL of Gold candles in the hot tier.")

    # --- cold tier (Iceberg; `streamapp offload`, `iceberg maintain`, `verify warm-cold`) ---
    iceberg_catalog_uri: str = Field(
        "", description="Catalog: empty = embedded SQL catalog on $STREAMAPP_HOME/iceberg/catalog.db; "
        "sqlite:///… or postgresql://… (SQL catalog); http(s)://… (REST catalog).")
    iceberg_warehouse: str = Field(
        "", description="Where data files go: empty = file://$STREAMAPP_HOME/iceberg/warehouse; s3://bucket/path.")
    iceberg_namespace: str = Field("streamapp", description="Namespace of the cold-tier tables.")
    iceberg_s3_endpoint: str = Field("", description="S3-compatible endpoint (MinIO: http://minio:9000); empty = AWS.")
    iceberg_s3_access_key_id: str | None = None
    iceberg_s3_secret_access_key: SecretStr | None = None
    iceberg_s3_region: str = "us-east-1"
    iceberg_offload_grace_s: int = Field(
        300, ge=0, description="An hour is closed this long after its end and after its last ingested trade.")
    iceberg_snapshot_max_age_h: float = Field(
        168.0, gt=0, description="`iceberg maintain` expires snapshots older than this (hours).")
    iceberg_orphan_min_age_s: int = Field(
        3600, ge=0, description="Unreferenced files younger than this are kept (a running offload may own them).")
    iceberg_metadata_versions_max: int = Field(
        20, ge=1, description="Old metadata.json files each table keeps (write.metadata.previous-versions-max).")

    # --- local stack -------------------------------------------------------
    kafka_version: str = Field("4.1.1", description="Apache Kafka release the local stack runs.")
    kafka_controller_port: int = 9093
    stack_brokers: int = Field(
        1, ge=1, le=9, description="Kafka nodes of the local stack (each broker and KRaft controller); "
        "node k listens on the k-th bootstrap address (else every second port after the last one listed), "
        "its controller on kafka_controller_port + 2(k-1)."
    )
    kafka_heap: str = "512m"
    stack_start_timeout_s: float = 90.0
    prometheus_url: str = Field(
        "http://127.0.0.1:9090", description="The local stack's Prometheus (`stack up --with-prometheus`): where it "
        "listens, and whose query API `bench/soak.py` reads."
    )
    prometheus_scrape_interval_s: float = Field(
        5.0, gt=0, description="How often the local stack's Prometheus scrapes every process (and evaluates the rules)."
    )

    # --- feed handlers (`streamapp feed run` / `feed record`; their options override these) ---
    binance_ws_url: str = Field(WS_URLS[BINANCE], description="Binance WebSocket (combined streams) URL.")
    binanceusdm_ws_url: str = Field(
        WS_URLS[BINANCEUSDM], description="Binance USDⓈ-M futures WebSocket (combined streams) URL."
    )
    kraken_ws_url: str = Field(WS_URLS[KRAKEN], description="Kraken WebSocket v2 URL.")
    binance_rest_url: str = Field(
        REST_URLS[BINANCE], description="Binance REST base URL: its symbol list, and trade-id gap backfill."
    )
    binanceusdm_rest_url: str = Field(
        REST_URLS[BINANCEUSDM],
        description="Binance USDⓈ-M futures REST base URL: its symbol list, and trade-id gap backfill.",
    )
    kraken_rest_url: str = Field(
        REST_URLS[KRAKEN], description="Kraken REST base URL: its symbol list, and trade-id gap backfill."
    )
    feed_backfill: bool = Field(
        True, description="Backfill trade-id gaps from REST; false: only detect and count them (offline runs)."
    )
    feed_max_buffered_records: int = Field(
        200_000, ge=1, description="Records the feed's producer buffers while the broker is away; more are dropped."
    )
    feed_message_timeout_s: float = Field(
        300.0, gt=0, description="How long a buffered record may wait for the broker before it counts as failed."
    )

    # --- processes -----------------------------------------------------------
    metrics_host: str = Field("127.0.0.1", description="Where /metrics listens (0.0.0.0 in containers).")
    feed_metrics_port: int = 9101
    kraken_feed_metrics_port: int = Field(
        9103, description="The Kraken feed's /metrics under `streamapp pipeline up` (Binance's: feed_metrics_port)."
    )
    binanceusdm_feed_metrics_port: int = Field(
        9104, description="The Binance USDⓈ-M futures feed's /metrics under `streamapp pipeline up`."
    )
    worker_web_port: int = 6066
    worker_metrics_port: int = 9102
    worker_session_timeout_s: float = Field(
        60.0, ge=6, description="How long the consumer group waits for a silent worker (killed, hung) before its "
        "partitions move to the other workers (Faust's broker_session_timeout; brokers refuse less than 6 s)."
    )
    simulator_port: int = 9200
    clock_skew_s: float = Field(5.0, ge=0, description="How far ahead of now a trade time may be.")
    binance_symbols: str = Field(
        "", description="Comma-separated Binance symbols (BTCUSDT,...) accepted besides what the exchange lists."
    )
    binanceusdm_symbols: str = Field(
        "", description="Comma-separated Binance USDⓈ-M futures symbols (BTCUSDT,...) accepted besides what the exchange "
        "lists."
    )
    kraken_symbols: str = Field(
        "", description="Comma-separated Kraken pairs (XBT/USD,...) accepted besides what the exchange lists."
    )
    # --- what the exchanges list (feeds and normalizer; streamapp.clients.listings) ---
    symbols_fetch_timeout_s: float = Field(
        10.0, gt=0, description="How long fetching an exchange's symbol list at start may take."
    )
    symbols_cache_max_age_s: float = Field(
        7 * 24 * 3600.0, ge=0,
        description="Oldest cached symbol list used when the exchange is unreachable; older: the bundled list.",
    )
    symbols_refresh_s: float = Field(
        3600.0, gt=0, description="How often the normalizer fetches the exchanges' symbol lists again."
    )

    # --- derived -----------------------------------------------------------
    def feed_ws_url(self, exchange: str) -> str:
        """The WebSocket URL the feed connects to for ``exchange`` (``binance``, ``binanceusdm`` or ``kraken``)."""
        return {BINANCE: self.binance_ws_url, BINANCEUSDM: self.binanceusdm_ws_url,
                KRAKEN: self.kraken_ws_url}[exchange]

    def feed_rest_url(self, exchange: str) -> str:
        """The REST base URL the feed backfills ``exchange``'s gaps from."""
        return {BINANCE: self.binance_rest_url, BINANCEUSDM: self.binanceusdm_rest_url,
                KRAKEN: self.kraken_rest_url}[exchange]

    @property
    def replication_factor(self) -> int:
        """Replicas of the topics streamapp creates (``topic_replication_factor``, else by stack size)."""
        return self.topic_replication_factor or min(self.stack_brokers, 3)

    @property
    def min_insync_replicas(self) -> int:
        """Replicas that must have a write before it is acknowledged (``acks=all``); one may be down."""
        return self.topic_min_insync_replicas or (2 if self.replication_factor >= 3 else 1)

    @property
    def stack_broker_host_ports(self) -> list[tuple[str, int]]:
        """Where the local stack's nodes 1..``stack_brokers`` listen for clients."""
        listed = [(host or "127.0.0.1", int(port)) for host, _, port in
                  (server.strip().rpartition(":") for server in self.kafka_bootstrap_servers.split(","))]
        host, port = listed[-1]  # nodes beyond the list: every second port after the last one listed
        return [listed[k] if k < len(listed) else (host, port + 2 * (k - len(listed) + 1))
                for k in range(self.stack_brokers)]

    @property
    def stack_bootstrap_servers(self) -> str:
        """Every node of the local stack: clients bootstrap from any of them (one may be stopped)."""
        return ",".join(f"{host}:{port}" for host, port in self.stack_broker_host_ports)

    @property
    def broker_host_port(self) -> tuple[str, int]:
        first = self.kafka_bootstrap_servers.split(",")[0]
        host, _, port = first.rpartition(":")
        return host or "127.0.0.1", int(port)

    @property
    def registry_host_port(self) -> tuple[str, int]:
        return _host_port(self.schema_registry_url, 8081)

    @property
    def prometheus_host_port(self) -> tuple[str, int]:
        return _host_port(self.prometheus_url, 9090)

    @property
    def clickhouse_host_port(self) -> tuple[str, int]:
        return _host_port(self.clickhouse_url, 8123)

    @property
    def warehouse_kafka_broker_list(self) -> str:
        return self.clickhouse_kafka_broker_list or self.kafka_bootstrap_servers

    @property
    def warehouse_schema_registry_url(self) -> str:
        return self.clickhouse_schema_registry_url or self.schema_registry_url

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka (confluent-kafka) configuration for the broker, security included."""
        config = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username:
            config["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password:
            config["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_cafile:
            config["ssl.ca.location"] = str(self.kafka_ssl_cafile)
        return config

    def schema_registry_config(self) -> dict[str, str]:
        """confluent-kafka ``SchemaRegistryClient`` configuration."""
        config = {"url": self.schema_registry_url}
        if self.schema_registry_username and self.schema_registry_password:
            config["basic.auth.user.info"] = (
                f"{self.schema_registry_username}:{self.schema_registry_password.get_secret_value()}"
            )
        return config


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first call."""
    return Settings()
