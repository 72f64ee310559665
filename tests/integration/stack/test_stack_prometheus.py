"""The local stack's Prometheus (the real binary) scrapes every process `pipeline up --workers 2` runs,
loads the alert rules, and answers its HTTP query API; a stopped process stops being a target.

Everything on free ports, Prometheus scraping every second; bounded in time, stopped at the end.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable

import httpx
import pytest
import yaml

from streamapp import pipeline, topics
from streamapp.clients import prometheus as prom
from streamapp.clients.kafka import ensure_topics
from streamapp.stack import prometheus, services
from tests.cli import invoke
from tests.integration.processes import free_port

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("prometheus") is None,
                                 reason="the prometheus binary is not installed (`make install` installs it)")]


def wait_for(condition: Callable[[], bool], timeout_s: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout_s:.0f}s: {what()}")


def by_service(url: str, expr: str) -> dict[str, float]:
    return {labels.get("service", "?"): value for labels, value in prom.query(url, expr)}


@pytest.mark.timeout(480)
def test_prometheus_scrapes_every_pipeline_process_and_its_query_api_reads_them_back(migrated):
    settings = migrated.model_copy(update={
        "prometheus_url": f"http://127.0.0.1:{free_port()}", "prometheus_scrape_interval_s": 1.0,
        "worker_metrics_port": free_port(), "worker_web_port": free_port(), "feed_metrics_port": free_port(),
        "kraken_feed_metrics_port": free_port(), "binanceusdm_feed_metrics_port": free_port(),
        "simulator_port": free_port()})
    url = settings.prometheus_url
    ensure_topics(settings, topics.PIPELINE_TOPICS)
    procs = pipeline.processes(live=False, workers=2)  # worker, worker-2, the simulator, a feed per exchange
    names = {svc.name for svc in procs}
    try:
        services.start(settings, services.PROMETHEUS, timeout_s=60)
        services.up(settings, procs)

        def logs() -> str:
            return "\n".join(f"--- {n}\n{services.log_tail(settings, n, 10)}" for n in (*names, "prometheus"))

        wait_for(lambda: {s for s, v in by_service(url, "up").items() if v == 1} >= names | {"prometheus"}, 90,
                 lambda: f"targets up: {by_service(url, 'up')}\n{logs()}")
        # A metric of each kind of process, read back through /api/v1/query.
        wait_for(lambda: set(by_service(url, "sum by (service) (streamapp_normalizer_consumer_lag)"))
                 == {"worker", "worker-2"}, 120,
                 lambda: f"lag gauges: {by_service(url, 'streamapp_normalizer_consumer_lag')}\n{logs()}")
        feeds = {f"feed-{e}" for e in ("binance", "binanceusdm", "kraken")}
        wait_for(lambda: {s for s, v in by_service(url, "sum by (service) (streamapp_feed_frames_received_total)")
                          .items() if v > 0} == feeds, 90,
                 lambda: f"{by_service(url, 'sum by (service) (streamapp_feed_frames_received_total)')}\n{logs()}")
        assert prom.value(url, 'sum(streamapp_simulator_frames_sent_total{service="simulator"})') > 0
        rss = by_service(url, "process_resident_memory_bytes")
        assert all(rss.get(name, 0) > 10 << 20 for name in names | {"prometheus"}), rss
        # the feeds keep their own exchange label (honor_labels), as in deploy/prometheus.yml
        assert {labels["exchange"] for labels, _ in prom.query(url, "streamapp_feed_connections")} == \
            {"binance", "binanceusdm", "kraken"}

        # The alert rules are loaded and evaluated.
        rules = httpx.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        loaded = [r for g in rules for r in g["rules"]]
        declared = [r for g in yaml.safe_load(prometheus.rules_file().read_text())["groups"] for r in g["rules"]]
        assert len(loaded) == len(declared) and all(r["health"] == "ok" for r in loaded), loaded

        # `stack status` lists it while it runs.
        env = {"STREAMAPP_PROMETHEUS_URL": url}
        status = invoke("stack", "status", env=env)
        assert any(line.split()[:1] == ["prometheus"] and line.endswith("healthy")
                   for line in status.output.splitlines()), status.output

        # A stopped worker is no target any more (its file_sd file is gone).
        services.stop(settings, pipeline.worker(2))

        def targets() -> set[str]:
            found = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            return {t["labels"].get("service") for t in found}

        wait_for(lambda: "worker-2" not in targets() and "worker" in targets(), 60, lambda: f"targets: {targets()}")

        stopped = invoke("stack", "stop", "prometheus", env=env)
        assert stopped.exit_code == 0 and "stopped prometheus" in stopped.output, stopped.output
        assert services.read_pid(settings, "prometheus") is None
    finally:
        services.down(settings, procs)
        services.stop(settings, services.PROMETHEUS)
