"""The local stack's Prometheus config: generated from the settings, valid for Prometheus's own checker
(promtool, from the Debian package `make install` installs), the same jobs as deploy/prometheus.yml,
and one target file per launched process."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streamapp import pipeline
from streamapp.errors import StreamappError
from streamapp.exchanges import EXCHANGES
from streamapp.settings import Settings
from streamapp.stack import prometheus, services

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
RULES = DEPLOY.parent / "streamapp" / "stack" / "prometheus-rules.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (`make install` installs "
                                    "the Debian package prometheus, which has it)")


def _settings(tmp_path: Path, **update) -> Settings:
    return Settings(home=tmp_path / "home", prometheus_url="http://127.0.0.1:50990", **update)


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)


@needs_promtool
def test_generated_config_passes_promtool_and_loads_the_alert_rules(tmp_path):
    settings = _settings(tmp_path, prometheus_scrape_interval_s=1.5)
    path = prometheus.write_config(settings)
    checked = _promtool("check", "config", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout  # the packaged rules, checked with it
    config = yaml.safe_load(path.read_text())
    assert config["global"]["scrape_interval"] == "1500ms"  # "1.5s" is no Prometheus duration
    assert config["rule_files"] == [str(RULES)]


@needs_promtool
@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus-local.yml"])
def test_deploy_configs_pass_promtool(name):
    checked = _promtool("check", "config", str(DEPLOY / name))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_alert_rules_pass_promtool():
    checked = _promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "rules found" in checked.stdout


def test_same_jobs_as_the_compose_config_so_the_dashboards_and_rules_work_on_both(tmp_path):
    generated = {job["job_name"] for job in prometheus.config(_settings(tmp_path))["scrape_configs"]}
    compose = {job["job_name"] for job in yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"]}
    assert generated == compose


def test_every_pipeline_process_is_scraped_by_a_job_of_the_config(tmp_path):
    jobs = {job["job_name"] for job in prometheus.config(_settings(tmp_path))["scrape_configs"]}
    every = (*pipeline.FLEET, pipeline.SIMULATOR,
             *(pipeline.feed(e, live) for e in EXCHANGES for live in (True, False)))
    for svc in every:
        assert svc.scrape is not None, f"{svc.name} is not scraped"
        assert svc.scrape[0] in jobs, svc
    assert {pipeline.feed(e, False).scrape[1]["exchange"] for e in EXCHANGES} == set(EXCHANGES)


def test_register_writes_one_file_sd_target_per_process_and_unregister_removes_it(tmp_path):
    settings = _settings(tmp_path, worker_metrics_port=50991)
    prometheus.write_config(settings)
    worker2 = pipeline.worker(2)
    job, labels = worker2.scrape
    prometheus.register(settings, worker2.name, job, labels, *worker2.host_port(settings))
    written = prometheus.targets_dir(settings) / "streamapp-worker" / "worker-2.json"
    # worker k serves its metrics at STREAMAPP_WORKER_METRICS_PORT + 10 (k - 1)
    assert json.loads(written.read_text()) == [
        {"targets": ["127.0.0.1:51001"], "labels": {"component": "normalizer", "service": "worker-2"}}]
    # the config's file_sd glob of that job matches the file
    sd = next(j for j in prometheus.config(settings)["scrape_configs"] if j["job_name"] == job)["file_sd_configs"]
    assert written.resolve().match(sd[0]["files"][0])
    prometheus.unregister(settings, worker2.name)
    assert not written.exists()


def test_a_process_listening_on_every_address_is_scraped_on_loopback(tmp_path):
    settings = _settings(tmp_path)
    prometheus.register(settings, "feed-kraken", "streamapp-feed", {"exchange": "kraken"}, "0.0.0.0", 9103)
    found = json.loads((prometheus.targets_dir(settings) / "streamapp-feed" / "feed-kraken.json").read_text())
    assert found[0]["targets"] == ["127.0.0.1:9103"]


def test_prometheus_is_a_service_of_the_stack_only_when_asked_or_running(tmp_path):
    settings = _settings(tmp_path)
    assert "prometheus" not in [s.name for s in services.stack_services(settings)]
    assert [s.name for s in services.stack_services(settings, with_prometheus=True)][-1] == "prometheus"
    assert services.service(settings, "prometheus") is services.PROMETHEUS  # `stack stop/start prometheus`
    assert services.PROMETHEUS.host_port(settings) == ("127.0.0.1", 50990)


def test_a_missing_prometheus_binary_says_to_run_make_install(tmp_path, monkeypatch):
    monkeypatch.setattr(prometheus.shutil, "which", lambda name: None)
    with pytest.raises(StreamappError, match="make install"):
        prometheus.command(_settings(tmp_path))
