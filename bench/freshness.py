"""Benchmark: freshness, from a feed handler receiving a trade to the trade written to Silver.

The whole pipeline, as in production: the exchange simulator serves a
synthetic Binance capture at a steady rate (default 1,000 trades/s, fresh
trade ids each run so Silver keeps every one), the real feed handler publishes
the frames, the normalizer worker turns them into Avro, and ClickHouse's Kafka
engine writes Bronze and, in the same insert, Silver. Each trade carries its
receive time (set by the feed handler) and Silver its ingest time (set by
ClickHouse when the insert ran), so freshness is read per trade from the table,
with no polling error. Needs a running local stack with migrations applied
(`streamapp pipeline up` does both; stop its feeds first with `streamapp pipeline down`).

    python bench/freshness.py --rate 1000 --seconds 30
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamapp import tables  # noqa: E402
from streamapp.clients.clickhouse import connect  # noqa: E402
from streamapp.settings import get_settings  # noqa: E402
from streamapp.simulator.capture import synthetic_binance  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streamapp.cli", *args], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="trades per second")
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    settings = get_settings()
    client = connect(settings)
    work = Path(tempfile.mkdtemp(prefix="freshness-"))
    first, last = synthetic_binance(work / "capture.jsonl.gz", rate=args.rate, seconds=args.seconds,
                                    first_id=10**15 + random.randrange(10**12))
    port = free_port()
    env = {**os.environ, "STREAMAPP_WORKER_WEB_PORT": str(free_port()),
           "STREAMAPP_WORKER_METRICS_PORT": str(free_port())}
    worker = spawn(["worker", "-l", "warning"], work / "worker.log", env)
    time.sleep(8)  # worker joins its group and registers the schema
    simulator = spawn(["exchange", "serve", "--capture", str(work / "capture.jsonl.gz"), "--speed", "1",
                       "--port", str(port)], work / "simulator.log", env)
    time.sleep(1.5)
    feed = spawn(["feed", "run", "--exchange", "binance", "--symbols", "BTCUSDT", "--no-backfill",
                  "--url", f"ws://127.0.0.1:{port}/stream", "--metrics-port", "0"], work / "feed.log", env)
    try:
        query = (f"SELECT count() FROM {tables.SILVER} WHERE exchange = 'binance' AND symbol = 'BTC/USDT' "
                 f"AND trade_seq BETWEEN {first} AND {last}")
        deadline = time.monotonic() + args.seconds + 120
        while client.command(query) < last - first + 1:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {client.command(query)} of {last - first + 1} trades arrived; logs in {work}")
            time.sleep(1)
    finally:
        for proc in (feed, simulator, worker):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    row = client.query(
        "SELECT count(), "
        "quantiles(0.5, 0.9, 0.99, 0.999)(dateDiff('microsecond', receive_time, ingest_time) / 1000), "
        "max(dateDiff('microsecond', receive_time, ingest_time) / 1000), "
        "min(receive_time), max(receive_time) "
        f"FROM {tables.SILVER} WHERE exchange = 'binance' AND symbol = 'BTC/USDT' AND trade_seq BETWEEN {first} AND {last}"
    ).result_rows[0]
    count, (p50, p90, p99, p999), worst, began, ended = row
    span = (ended - began).total_seconds()
    print(f"trades: {count} at {count / span:,.0f}/s received over {span:.1f}s")
    print(f"receive -> in Silver (ms): p50 {p50:.0f}  p90 {p90:.0f}  p99 {p99:.0f}  p99.9 {p999:.0f}  max {worst:.0f}")


if __name__ == "__main__":
    main()
