"""Faults under load, each on the whole pipeline: simulator -> feed -> 2 workers -> warehouse, on a
three-broker stack of the module's own (``stack up --brokers 3``, own home and ports).

Each test serves a synthetic Binance capture (``capture.synthetic_binance``: one trade a frame,
``RATE`` trades/s for ``SECONDS``, fresh trade ids, a symbol of its own ``Z<hex>USDT``) from the
simulator in ``--live`` mode (the stream runs on the wall clock, as a real exchange: nothing waits
for a slow or absent client), through ``streamapp feed run`` and two ``streamapp worker`` processes
in one group, to ClickHouse. Mid-stream one fault is applied; at the end:

- every trade id of the capture is in Silver exactly once (unmerged counts: a duplicate shows);
- nothing of the symbol is in the DLQ;
- every 1m candle of the window equals the reference computed here from the capture;
- the feed received at least ``MIN_RATE`` trades/s (Silver's receive times: count / span).

Marker ``faults``: minutes each, run by ``make test-faults``.
"""

from __future__ import annotations

import random
import re
import time
import urllib.request
from pathlib import Path

import pytest

from streamapp import migrations, tables, topics
from streamapp.clients.clickhouse import connect
from streamapp.clients.kafka import ensure_topics
from streamapp.simulator.capture import synthetic_binance
from tests.integration.agents.test_normalizer_fleet import wait_for_owners
from tests.integration.cluster import Cluster
from tests.integration.kafkautil import count_from, end_offsets, read_from
from tests.integration.processes import Process, free_port
from tests.integration.test_pipeline import binance_trades, reference_candles, scope, warehouse_candles

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(900)]

RATE = 2100          # trades/s the simulator serves (a margin over what is asserted)
MIN_RATE = 2000      # trades/s the feed must have received, by Silver's receive times
SECONDS = 80         # of stream at RATE: the fault starts when it flows end to end and lasts FAULT_S
TAIL = (20, 30)      # then 20 trades/s for 30 s: a feed that lost the connection near the end still sees
                     # later ids, finds the gap and backfills it (a real exchange never stops trading)
FAULT_S = 30
WORKERS = 2
RAW, NORMALIZED = topics.raw("binance"), topics.normalized("binance")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A three-broker stack of this module's own, migrated, with the pipeline topics (3 replicas)."""
    cluster = Cluster(tmp_path_factory.mktemp("faults-stack"), brokers=3)
    try:
        cluster.up()
        ensure_topics(cluster.settings, topics.PIPELINE_TOPICS)  # first: the Kafka tables subscribe to them
        steps = [step.subject for step in migrations.migrate(connect(cluster.settings), cluster.settings)]
        assert len(steps) == len(migrations.discover()), steps
        yield cluster
    finally:
        cluster.cli("down", check=False)


def silver_counts(client, symbol: str, first: int, last: int) -> dict[int, int]:
    rows = client.query(
        f"SELECT trade_seq, count() FROM {tables.SILVER} WHERE exchange = 'binance' AND symbol = {{symbol:String}} "
        "AND trade_seq BETWEEN {first:Int64} AND {last:Int64} GROUP BY trade_seq",
        parameters={"symbol": symbol, "first": first, "last": last}).result_rows
    return {int(seq): int(n) for seq, n in rows}


def silver_total(client, symbol: str, first: int, last: int) -> int:
    """Rows in Silver for these ids (a duplicate counts twice); 0 while the warehouse is away."""
    try:
        return int(client.command(
            f"SELECT count() FROM {tables.SILVER} WHERE exchange = 'binance' AND symbol = {{symbol:String}} "
            "AND trade_seq BETWEEN {first:Int64} AND {last:Int64}",
            parameters={"symbol": symbol, "first": first, "last": last}))
    except Exception:  # noqa: BLE001 - the warehouse may be the fault
        return 0


def receive_rate(client, symbol: str, first: int, last: int) -> tuple[float, float, float]:
    """(trades/s over the whole stream, the slowest 10 s window's trades/s, span s) by Silver's receive times."""
    count, began, ended = client.query(
        f"SELECT count(), min(receive_time), max(receive_time) FROM {tables.SILVER} WHERE exchange = 'binance' "
        "AND symbol = {symbol:String} AND trade_seq BETWEEN {first:Int64} AND {last:Int64}",
        parameters={"symbol": symbol, "first": first, "last": last}).result_rows[0]
    span = (ended - began).total_seconds()
    buckets = client.query(
        f"SELECT intDiv(toUnixTimestamp64Micro(receive_time) - {{t0:Int64}}, 10000000) AS b, count() "
        f"FROM {tables.SILVER} WHERE exchange = 'binance' AND symbol = {{symbol:String}} "
        "AND trade_seq BETWEEN {first:Int64} AND {last:Int64} GROUP BY b ORDER BY b",
        parameters={"symbol": symbol, "first": first, "last": last,
                    "t0": int(began.timestamp() * 1e6)}).result_rows
    full = [n for b, n in buckets[:-1]]  # the last window is partial
    return count / span, (min(full) / 10 if full else 0.0), span


def warehouse_consumer(client) -> str:
    """What the warehouse's Binance Kafka table is doing (for the timeline)."""
    try:
        read, partitions, errors = client.query(
            "SELECT num_messages_read, assignments.partition_id, exceptions.text FROM system.kafka_consumers "
            "WHERE table = {table:String}", parameters={"table": tables.kafka("binance")}).result_rows[0]
        bronze = client.command(f"SELECT count() FROM {tables.bronze('binance')}")
    except Exception as exc:  # noqa: BLE001 - the warehouse may be the fault
        return f"warehouse: {type(exc).__name__}"
    last_error = errors[-1].splitlines()[0] if errors else ""
    return f"kafka table read {read} partitions {list(partitions)} bronze {bronze} {last_error}"


def wait_for(predicate, timeout_s: float, poll_s: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return False


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


class Run:
    """One stream through the pipeline: the capture, the processes, and what the checks read."""

    def __init__(self, cluster: Cluster, tmp: Path, simulator_faults: tuple[str, ...] = ()) -> None:
        rng = random.Random()
        self.settings = cluster.settings
        self.client = connect(cluster.settings)
        base = f"Z{rng.randrange(16**6):06X}"
        self.exchange_symbol, self.symbol = f"{base}USDT", f"{base}/USDT"
        self.capture = tmp / "capture.jsonl.gz"
        self.first, self.last = synthetic_binance(self.capture, rate=RATE, seconds=SECONDS,
                                                  first_id=10**15 + rng.randrange(10**12),
                                                  symbol=self.exchange_symbol, tail=TAIL)
        self.total = self.last - self.first + 1
        self.main_last = self.first + RATE * SECONDS - 1  # the last id served at RATE
        self.dlq_start = end_offsets(self.settings, topics.DLQ)
        self.raw_start, self.normalized_start = end_offsets(self.settings, RAW), end_offsets(self.settings, NORMALIZED)
        self.timeline: list[str] = []
        self._shown = 0.0
        env = {**cluster.client_env(), "STREAMAPP_BINANCE_SYMBOLS": self.exchange_symbol}
        self.workers = [Process(["worker", "-l", "warning"], tmp / f"worker-{k}.log", env={
            **env, "STREAMAPP_WORKER_WEB_PORT": str(free_port()), "STREAMAPP_WORKER_METRICS_PORT": str(free_port())})
            for k in range(1, WORKERS + 1)]
        self.processes = list(self.workers)
        port = free_port()
        self.simulator = Process(["exchange", "serve", "--capture", str(self.capture), "--speed", "1", "--live",
                                  "--port", str(port), *simulator_faults], tmp / "simulator.log", env=env)
        self.processes.append(self.simulator)
        self.feed_args = ["feed", "run", "--exchange", "binance", "--symbols", self.exchange_symbol,
                          "--metrics-port", "0", "--url", f"ws://127.0.0.1:{port}/stream",
                          "--rest-url", f"http://127.0.0.1:{port}"]
        self.feed_env, self.tmp, self.port = env, tmp, port
        self.feed: Process | None = None

    def start(self) -> dict[int, set[int]]:
        """Both workers in the group, sharing the raw Binance partitions, then the simulator and the
        feed (the stream's clock starts at the feed's subscription). Returns the assignment."""
        partitions = sorted(end_offsets(self.settings, RAW))
        owners = wait_for_owners(self.settings, {w.proc.pid for w in self.workers}, partitions, 180, topic=RAW)
        assert wait_for(lambda: healthy(f"http://127.0.0.1:{self.port}/health"), 90, 0.5), self.simulator.output()
        self.feed = Process(self.feed_args, self.tmp / "feed.log", env=self.feed_env)
        self.processes.append(self.feed)
        self.started = time.monotonic()
        return owners

    def in_silver(self) -> int:
        count = silver_total(self.client, self.symbol, self.first, self.last)
        now = time.monotonic()
        if now - self._shown >= 10:  # a timeline in the output (-s) and in a failure message
            self._shown = now
            self.timeline.append(f"{now - self.started:5.0f}s raw {count_from(self.settings, RAW, self.raw_start):>7} "
                                 f"normalized {count_from(self.settings, NORMALIZED, self.normalized_start):>7} "
                                 f"silver {count:>7} | {warehouse_consumer(self.client)}")
            print(self.timeline[-1], flush=True)
        return count

    def wait_flowing(self, trades: int = 5_000) -> None:
        """Until ``trades`` of the stream are in Silver (the whole pipeline is running), with at least
        ``FAULT_S`` of the stream still to come: the fault comes under load."""
        assert wait_for(lambda: self.in_silver() >= trades, 240), self.logs()
        elapsed = time.monotonic() - self.started
        assert elapsed < SECONDS - FAULT_S, f"the first trades reached Silver only {elapsed:.0f}s into the stream"

    def finish(self, timeout_s: float = 300) -> dict[int, int]:
        """Until every trade id is in Silver (or ``timeout_s``), then a little longer (a duplicate would
        arrive with the last blocks); the counts per id."""
        wait_for(lambda: self.in_silver() >= self.total, timeout_s)
        self.completed_s = time.monotonic() - self.started
        time.sleep(5)
        return silver_counts(self.client, self.symbol, self.first, self.last)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def logs(self) -> str:
        return "\n".join([*self.timeline, *(f"--- {p.log.name}\n{p.output()[-1500:]}" for p in self.processes)])

    def check(self, found: dict[int, int]) -> str:
        """The end state every fault test asserts; a summary line for the report."""
        ids = range(self.first, self.last + 1)
        missing = [i for i in ids if i not in found]
        assert not missing, f"{len(missing)} of {self.total} trades never reached Silver, e.g. {missing[:5]}\n{self.logs()}"
        duplicated = {i: n for i, n in found.items() if n != 1}
        assert not duplicated, f"{len(duplicated)} trades in Silver more than once, e.g. {list(duplicated.items())[:5]}"
        assert set(found) == set(ids)

        dlq = read_from(self.settings, topics.DLQ, self.dlq_start,
                        until=count_from(self.settings, topics.DLQ, self.dlq_start), timeout_s=30)
        ours = [m for m in dlq if m.key() == self.exchange_symbol.encode()]
        assert not ours, f"{len(ours)} of the stream's frames in the DLQ, e.g. {dict(ours[0].headers() or [])}"

        trades = binance_trades(self.capture, self.symbol)
        assert len(trades) == self.total
        within = scope(trades)
        assert warehouse_candles(self.client, "binance", "1m", within) == reference_candles(trades, 60)

        rate, slowest, span = receive_rate(self.client, self.symbol, self.first, self.main_last)
        backfilled = sum(int(n) for n in re.findall(r"backfilled (\d+) of", self.feed.output()))
        summary = (f"{self.total:,} trades ({len(reference_candles(trades, 60))} 1m candles) each once in Silver; "
                   f"the {RATE * SECONDS:,} served at {RATE:,}/s received at {rate:,.0f}/s over {span:.1f}s "
                   f"(slowest 10 s: {slowest:,.0f}/s; {backfilled:,} of all trades came by REST backfill); "
                   f"all in Silver {self.completed_s:.0f}s after the stream began")
        print(summary)
        assert rate >= MIN_RATE, f"the feed received {rate:,.0f} trades/s (over {span:.1f}s), under {MIN_RATE:,}"
        return summary


def fault_for(cluster: Cluster, service: str, run: Run) -> float:
    """``stack stop SERVICE``, ``FAULT_S`` seconds, ``stack start SERVICE``; how long it was down."""
    assert cluster.cli("stop", service).stdout.strip() == f"stopped {service}"
    stopped = time.monotonic()
    while time.monotonic() - stopped < FAULT_S:
        run.in_silver()  # the timeline goes on
        time.sleep(min(2.0, max(0.0, FAULT_S - (time.monotonic() - stopped))))
    assert f"{service} healthy at" in cluster.cli("start", service).stdout
    return time.monotonic() - stopped


def run_with_stack_fault(cluster: Cluster, tmp_path: Path, service: str) -> None:
    run = Run(cluster, tmp_path)
    try:
        run.start()
        run.wait_flowing()
        down_s = fault_for(cluster, service, run)
        found = run.finish()
        for worker in run.workers:
            assert worker.proc.poll() is None, f"a worker died:\n{worker.why_it_died()}"
    finally:
        run.stop()
    print(f"\n{service} down {down_s:.1f}s: " + run.check(found))


def test_a_broker_of_three_stopped_for_30s_under_load(cluster, tmp_path):
    run_with_stack_fault(cluster, tmp_path, "broker-2")


def test_the_warehouse_stopped_for_30s_under_load_rereads_and_silver_dedups(cluster, tmp_path):
    run_with_stack_fault(cluster, tmp_path, "warehouse")


def test_the_registry_stopped_for_30s_under_load_workers_wait_and_nothing_goes_to_the_dlq(cluster, tmp_path):
    run_with_stack_fault(cluster, tmp_path, "registry")


def test_one_of_two_workers_sigkilled_under_load(cluster, tmp_path):
    """The survivor takes the victim's partitions once the group notices (Faust's session timeout)."""
    run = Run(cluster, tmp_path)
    try:
        owners = run.start()
        run.wait_flowing()
        by_pid = {w.proc.pid: w for w in run.workers}
        victim = max(owners, key=lambda pid: len(owners[pid]))
        by_pid[victim].kill()
        killed = time.monotonic()
        survivor = next(pid for pid in by_pid if pid != victim)
        partitions = sorted(end_offsets(run.settings, RAW))
        wait_for_owners(run.settings, {survivor}, partitions, 150, topic=RAW)
        handover_s = time.monotonic() - killed
        found = run.finish()
        assert by_pid[survivor].proc.poll() is None, f"the survivor died:\n{by_pid[survivor].why_it_died()}"
    finally:
        run.stop()
    print(f"\nworker {victim} (raw partitions {sorted(owners[victim])}) SIGKILLed, survivor owns all after "
          f"{handover_s:.1f}s: " + run.check(found))


def test_the_feeds_websocket_dropped_every_few_thousand_frames_with_id_gaps_backfilled(cluster, tmp_path):
    """The simulator aborts the connection after every 5,000 frames (live: what it sends while the feed
    reconnects is missed) and skips 5 ids after every 3,000; the feed backfills both kinds of gap from REST."""
    run = Run(cluster, tmp_path, simulator_faults=("--drop-every", "5000", "--skip-every", "3000",
                                                   "--skip-count", "5"))
    try:
        run.start()
        found = run.finish()
        for worker in run.workers:
            assert worker.proc.poll() is None, f"a worker died:\n{worker.why_it_died()}"
    finally:
        run.stop()
    simulator_log, feed_log = run.simulator.output(), run.feed.output()
    drops, skips = simulator_log.count("injecting drop"), simulator_log.count("injecting skip")
    assert drops >= 10 and skips >= 10, simulator_log[-2000:]
    assert f"GAP in {run.exchange_symbol}" in feed_log, feed_log[-3000:]
    print(f"\n{drops} drops, {skips} skips of 5 ids: " + run.check(found))
