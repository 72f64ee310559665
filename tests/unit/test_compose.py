"""compose.yaml, checked statically (no container engine runs here): valid, complete, consistent with settings."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streamapp import pipeline
from streamapp.exchanges import EXCHANGES
from streamapp.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def env_of(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES[name].get("environment", {}).items()}


def test_valid_against_the_compose_specification():
    # docker-compose (Debian's package, installed by deploy/scripts/install.sh) validates
    # against the Compose specification's JSON schema without needing an engine.
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is missing: run deploy/scripts/install.sh"
    result = subprocess.run([tool, "-f", str(REPO / "compose.yaml"), "config", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


FEEDS = [f"feed-{e}{profile}" for e in EXCHANGES for profile in ("", "-offline")]


@pytest.mark.parametrize("name", [
    "redpanda", "clickhouse", "prometheus", "grafana", "migrate", "worker", "simulator", *FEEDS,
])
def test_every_service_the_platform_needs_is_there_with_a_health_check(name):
    assert name in SERVICES
    assert "healthcheck" in SERVICES[name] or name == "migrate"  # migrate runs once


def test_every_streamapp_variable_is_a_setting():
    fields = set(Settings.model_fields)
    for name, service in SERVICES.items():
        for key in service.get("environment", {}):
            if key.startswith("STREAMAPP_"):
                assert key.removeprefix("STREAMAPP_").lower() in fields, (name, key)


def test_addresses_agree_between_services_and_settings():
    env = env_of("worker")
    settings = Settings(**{k.removeprefix("STREAMAPP_").lower(): v for k, v in env.items()})
    redpanda = " ".join(SERVICES["redpanda"]["command"])
    assert f"internal://{settings.kafka_bootstrap_servers}" in redpanda  # advertised to the other containers
    assert re.search(rf"--schema-registry-addr=0\.0\.0\.0:{settings.registry_host_port[1]}\b", redpanda)
    assert settings.registry_host_port[0] == "redpanda" and settings.broker_host_port[0] == "redpanda"
    assert settings.clickhouse_host_port == ("clickhouse", 8123)
    assert "8123:8123" in SERVICES["clickhouse"]["ports"]
    assert settings.metrics_host == "0.0.0.0"  # reachable by Prometheus from another container


@pytest.mark.parametrize(("service", "variable"), [
    ("worker", "STREAMAPP_WORKER_METRICS_PORT"), *((feed, "STREAMAPP_FEED_METRICS_PORT") for feed in FEEDS),
])
def test_metrics_ports_are_published_and_health_checked(service, variable):
    port = env_of(service)[variable]
    assert f"{port}:{port}" in SERVICES[service]["ports"]
    health = " ".join(SERVICES[service]["healthcheck"]["test"])
    assert port in health or variable in health


def test_offline_feeds_point_at_the_simulator_and_its_captures_exist():
    sim = SERVICES["simulator"]["command"]
    port = sim[sim.index("--port") + 1]
    assert env_of("feed-binance-offline")["STREAMAPP_BINANCE_WS_URL"] == f"ws://simulator:{port}/stream"
    assert env_of("feed-binanceusdm-offline")["STREAMAPP_BINANCEUSDM_WS_URL"] == f"ws://simulator:{port}/fstream/stream"
    assert env_of("feed-kraken-offline")["STREAMAPP_KRAKEN_WS_URL"] == f"ws://simulator:{port}/v2"
    for exchange in EXCHANGES:  # the paths `streamapp pipeline up` uses, and REST from the simulator too
        env = env_of(f"feed-{exchange}-offline")
        assert env[f"STREAMAPP_{exchange.upper()}_WS_URL"] == f"ws://simulator:{port}{pipeline.SIMULATOR_PATHS[exchange]}"
        assert env[f"STREAMAPP_{exchange.upper()}_REST_URL"] == f"http://simulator:{port}"
    captures = [sim[i + 1] for i, arg in enumerate(sim) if arg == "--capture"]
    for capture in captures:
        assert (REPO / capture).exists(), capture
    # the same captures as `streamapp pipeline up` serves offline: each exchange's
    assert {Path(c).name for c in captures} == {name for name, _symbols in pipeline.SIMULATED.values()}


def test_each_exchange_feed_has_its_own_metrics_port():
    for profile in ("", "-offline"):
        ports = [env_of(f"feed-{e}{profile}")["STREAMAPP_FEED_METRICS_PORT"] for e in EXCHANGES]
        assert len(set(ports)) == len(EXCHANGES), (profile, ports)


def test_mounted_config_files_exist():
    for name in ("prometheus", "grafana"):
        for volume in SERVICES[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), source


def test_cold_tier_services_agree_with_the_offload_settings():
    for name in ("minio", "iceberg-rest", "offload"):
        assert "healthcheck" in SERVICES[name], name
    env = env_of("offload")
    settings = Settings(**{k.removeprefix("STREAMAPP_").lower(): v for k, v in env.items()})
    rest = SERVICES["iceberg-rest"]
    assert settings.iceberg_catalog_uri == f"http://iceberg-rest:{rest['ports'][0].split(':')[1]}"
    bucket = settings.iceberg_warehouse.removeprefix("s3://").strip("/")
    assert f"local/{bucket}" in SERVICES["minio-init"]["entrypoint"][-1]
    assert rest["environment"]["CATALOG_WAREHOUSE"].rstrip("/") == settings.iceberg_warehouse.rstrip("/")
    minio = SERVICES["minio"]["environment"]
    assert settings.iceberg_s3_access_key_id == minio["MINIO_ROOT_USER"] == rest["environment"]["AWS_ACCESS_KEY_ID"]
    assert settings.iceberg_s3_secret_access_key.get_secret_value() == minio["MINIO_ROOT_PASSWORD"]
    assert settings.iceberg_s3_endpoint == "http://minio:9000" and "9000:9000" in SERVICES["minio"]["ports"]
    assert SERVICES["offload"]["command"] == ["offload", "--every", "1h"]
