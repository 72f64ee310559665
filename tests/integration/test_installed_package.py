"""The installed package works: a wheel in a fresh virtual environment, run from outside the checkout.

`stack up`, `db migrate`, `pipeline up` and `tables candles` read files at run time
(migrations, captures, the Kafka pom); here they must come from the wheel, never
from the source tree. The installed stack has its own home and ports.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
# Not copied into the build: stack data, build leftovers (a stale build/lib would put
# deleted files into the wheel), caches.
NOT_SOURCE = shutil.ignore_patterns(".git", ".stack*", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                    ".hypothesis")


def run(command: list[str], *, env: dict[str, str], cwd: Path, timeout_s: float) -> str:
    """Run ``command``; its combined output, or a failure that shows it."""
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout_s,
                            stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{output[-4000:]}"
    return output


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv (sharing the site packages for the dependencies) with streamapp from its wheel only.

    ``--ignore-installed``: pip would otherwise see a streamapp 0.1.0 in the shared site packages
    (an editable install of some checkout) and install nothing.
    """
    base = tmp_path_factory.mktemp("installed")
    source = base / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(base / "dist"),
         str(source)], env=dict(os.environ), cwd=base, timeout_s=180)
    wheel = next((base / "dist").glob("streamapp-*.whl"))
    venv = base / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], env=dict(os.environ), cwd=base,
        timeout_s=120)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--ignore-installed", str(wheel)],
        env=dict(os.environ), cwd=base, timeout_s=180)
    shutil.rmtree(source)
    return venv


def test_the_installed_wheel_runs_stack_migrations_pipeline_and_candles(venv, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMAPP_") and k != "PYTHONPATH"}
    env |= {
        "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}",
        "STREAMAPP_HOME": str(tmp_path / "home"),
        "STREAMAPP_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "STREAMAPP_KAFKA_CONTROLLER_PORT": str(free_port()),
        "STREAMAPP_SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{free_port()}",
        "STREAMAPP_CLICKHOUSE_URL": f"http://127.0.0.1:{free_port()}",
        "STREAMAPP_WORKER_WEB_PORT": str(free_port()),
        "STREAMAPP_WORKER_METRICS_PORT": str(free_port()),
        "STREAMAPP_FEED_METRICS_PORT": str(free_port()),
        "STREAMAPP_KRAKEN_FEED_METRICS_PORT": str(free_port()),
        "STREAMAPP_SIMULATOR_PORT": str(free_port()),
        "STREAMAPP_KAFKA_HEAP": "384m",
    }
    python = str(venv / "bin" / "python")
    streamapp = str(venv / "bin" / "streamapp")

    where = run([python, "-c", "import streamapp, records; print(streamapp.__file__); print(records.__file__)"],
                env=env, cwd=outside, timeout_s=60).split()
    for module_file in where:
        assert Path(module_file).is_relative_to(venv), f"{module_file} is not from the wheel installed in {venv}"
    installed = Path(where[0]).parent
    assert (installed / "stack" / "pom.xml").is_file()  # what `stack up` gives Maven on a cold cache
    # `stack up --with-prometheus` loads the alert rules from the wheel too (not from a checkout's deploy/).
    rules = run([python, "-c", "from streamapp.settings import get_settings; from streamapp.stack import prometheus; "
                 "print(*prometheus.config(get_settings())['rule_files'])"], env=env, cwd=outside, timeout_s=60).split()
    assert len(rules) == 1 and Path(rules[0]).is_relative_to(installed) and Path(rules[0]).is_file(), rules

    try:
        out = run([streamapp, "stack", "up"], env=env, cwd=outside, timeout_s=180)
        assert out.count("healthy at") == 3, out

        out = run([streamapp, "db", "migrate"], env=env, cwd=outside, timeout_s=180)
        shipped = sorted(p.name for p in (installed / "sql").glob("*.sql"))
        assert shipped and shipped[0] == "0001_kafka_errors.sql"
        for name in shipped:
            assert f"applied {name}" in out, out

        out = run([streamapp, "pipeline", "up", "--source", "simulator", "--wait", "180", "--workers", "2"],
                  env=env, cwd=outside, timeout_s=300)
        assert "first candles (UTC)" in out, out
        assert "worker        running" in out and "worker-2      running" in out, out
        assert str(installed / "captures") in (Path(env["STREAMAPP_HOME"]) / "logs" / "simulator.log").read_text()

        out = run([streamapp, "tables", "candles", "--exchange", "binance", "--symbol", "BTC/USDT",
                   "--interval", "1m", "--last", "5", "--format", "csv"], env=env, cwd=outside, timeout_s=120)
        rows = list(csv.DictReader(io.StringIO(out)))
        assert rows, out
        assert all(int(row["trade_count"]) > 0 for row in rows), out
    finally:
        for args in (["pipeline", "down"], ["stack", "down"]):
            subprocess.run([streamapp, *args], env=env, cwd=outside, capture_output=True, timeout=120)
