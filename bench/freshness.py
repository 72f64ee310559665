"""Benchmark: freshness (receive -> Silver, receive -> visible in Gold), the highest sustained rate, warehouse ingest.

Latency (``--sections latency``): the whole pipeline, as in production. The
exchange simulator serves a synthetic Binance capture at a steady rate (fresh
trade ids each run, so Silver keeps every one), the real feed handler publishes
the frames, one normalizer worker turns them into Avro, and ClickHouse's Kafka
engine writes Bronze, Silver and Gold in one insert chain. Per trade:

* receive -> read by ClickHouse: Silver's ``ingest_time - receive_time`` (the
  feed sets the receive time, the Kafka table's view the ingest time when it
  reads the block; exact, no polling);
* receive -> visible in Silver, receive -> visible in ``gold_ohlcv_1m_final``:
  Gold has no per-trade time, so a poller asks the warehouse every
  ``--poll-ms`` for Silver's count of this run's trades and for each 1m
  candle's ``trade_count``. One Kafka consumer writes the blocks one after the
  other, so the trades join Silver and each candle in ``ingest_time`` order: the
  k-th trade of a candle (in that order) is visible when the candle's count,
  less what it held before the run, reaches k. Its visible time is the end of
  the first poll that saw that (an upper bound); the poll before did not see it,
  so the error is at most the time from one poll's start to the next poll's end,
  reported as the resolution.

Each rate in ``--rates`` runs ``--seconds`` (60). The highest rate sustained
with bounded lag follows the rule of :func:`sustained`; rates climb until one
fails, except that the rates of ``--percentile-rates`` (1,000 and 5,000) always run.

Ingest (``--sections ingest``): the binance Kafka table is detached, ``--ingest-records``
normalized Avro trades (the worker's own normalization and encoding, fresh ids)
are written to the normalized topic, the table is attached again, and the
backlog is timed from the first trade ClickHouse reads (Silver's ``min(ingest_time)``)
until Silver holds them all, and until the 1m candles count them all.

Needs the broker, registry and warehouse running (``make bench`` starts them;
alone: ``streamapp stack up``); migrations are applied here. Results are printed
and saved as ``freshness.{json,md}`` in ``--out``.

    python bench/freshness.py [--sections latency,ingest] [--rates 1000,2000,5000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamapp import groups, headers, migrations, tables, topics  # noqa: E402
from streamapp.clients.clickhouse import connect  # noqa: E402
from streamapp.clients.kafka import ensure_topics  # noqa: E402
from streamapp.settings import Settings, get_settings  # noqa: E402
from streamapp.simulator.capture import synthetic_binance, synthetic_binance_frames  # noqa: E402

EXCHANGE, SYMBOL = "binance", "BTC/USDT"
GOLD_1M = tables.candles("1m")
STALLED_S = 30.0  # after a run's end, Silver unchanged this long: stop waiting for the rest
SILVER_KEY = "silver"  # the poller's key for Silver's count (candles are keyed by window start, epoch s)


# --- pure parts (tests/unit/bench/test_freshness.py) --------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of ``values``: a value that occurred, never interpolated."""
    if not values:
        return math.nan
    if not 0 < q <= 1:
        raise ValueError(f"quantile {q} must be in (0, 1]")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and max of ``values``."""
    ordered = sorted(values)
    return {"p50": percentile(ordered, 0.5), "p95": percentile(ordered, 0.95), "p99": percentile(ordered, 0.99),
            "max": ordered[-1] if ordered else math.nan}


def visible_at(keys: Sequence[Hashable], polls: Sequence[tuple[float, Mapping[Hashable, int]]],
               baseline: Mapping[Hashable, int]) -> list[float | None]:
    """When each trade became visible: ``keys[i]`` is trade i's counter (its candle), trades in the order they
    are written; ``polls`` are (time, count per key) in time order. Trade i, the k-th of its key, is visible
    at the first poll whose count for its key, less ``baseline``, is at least k; None if no poll saw it."""
    position: dict[Hashable, int] = {}
    needed = []
    for key in keys:
        position[key] = position.get(key, 0) + 1
        needed.append(position[key])
    # Per key, the first poll at which each count was reached: counts only grow, so one pass per key.
    reached: dict[Hashable, list[tuple[int, float]]] = {}
    for t, counts in polls:
        for key, count in counts.items():
            seen = count - baseline.get(key, 0)
            steps = reached.setdefault(key, [])
            if seen > 0 and (not steps or seen > steps[-1][0]):
                steps.append((seen, t))
    out: list[float | None] = []
    cursor: dict[Hashable, int] = {}
    for key, k in zip(keys, needed):
        steps = reached.get(key, [])
        i = cursor.get(key, 0)
        while i < len(steps) and steps[i][0] < k:
            i += 1
        cursor[key] = i
        out.append(steps[i][1] if i < len(steps) else None)
    return out


def window_p99s(receive_s: Sequence[float], latency_s: Sequence[float], window_s: float = 10.0) -> list[float]:
    """The p99 latency of the trades received in each ``window_s`` of the run (by receive time, from the first);
    the last few trades past the last whole window count in it."""
    if not receive_s:
        return []
    first = min(receive_s)
    windows = max(1, int((max(receive_s) - first) // window_s))
    bins: list[list[float]] = [[] for _ in range(windows)]
    for r, lat in zip(receive_s, latency_s):
        bins[min(windows - 1, int((r - first) // window_s))].append(lat)
    return [percentile(b, 0.99) for b in bins]


@dataclass(frozen=True)
class Rule:
    """What "sustained with bounded lag" means here (see :func:`sustained`)."""

    bound_s: float = 5.0      # no window's p99 receive -> Silver above this (after the first, warm-up)
    slack_s: float = 1.0      # the last window's p99 at most this above the second's: the lag does not grow
    min_fraction: float = 0.95  # the feed received at least this share of the target rate


def sustained(target_rate: float, received_rate: float, p99s: Sequence[float], drained: bool,
              rule: Rule = Rule()) -> tuple[bool, str]:
    """Whether a run held ``target_rate`` with bounded lag, and why not. ``p99s``: receive -> Silver p99 per 10 s
    window (:func:`window_p99s`); ``drained``: every trade reached Silver and Gold within the drain time.

    Sustained means: every trade arrived; the feed received >= ``min_fraction`` of the target rate (else the
    simulator or feed could not keep up, and the lag is upstream of the receive time); after the first window
    (warm-up), no window's p99 exceeds ``bound_s``; and the last window's p99 is at most ``slack_s`` above the
    second's (a rate above capacity shows as a lag growing window after window)."""
    if not drained:
        return False, "not every trade reached Silver and Gold"
    if received_rate < rule.min_fraction * target_rate:
        return False, f"received {received_rate:,.0f}/s < {rule.min_fraction:.0%} of {target_rate:,.0f}/s"
    if not p99s:
        return False, "no trades"
    steady = list(p99s[1:]) if len(p99s) > 2 else list(p99s)
    if max(steady) > rule.bound_s:
        return False, f"a 10 s window's p99 {max(steady):.2f} s > bound {rule.bound_s:.1f} s"
    if steady[-1] > steady[0] + rule.slack_s:
        return False, f"lag grows: last window p99 {steady[-1]:.2f} s > first {steady[0]:.2f} s + {rule.slack_s:.1f} s"
    return True, "sustained"


def ingest_span(polls: Sequence[tuple[float, int]], before: int, total: int) -> tuple[int, float]:
    """(trades, seconds) from the first poll that saw any of ``total`` new trades (count above ``before``) to
    the first that saw them all: a rate that needs no clock inside the warehouse, and leaves out the consumer's
    start. (0, nan) if no poll saw them all, or one poll saw them all at once (make ``total`` larger)."""
    first = next(((t, n - before) for t, n in polls if n > before), None)
    done = next((t for t, n in polls if n - before >= total), None)
    if first is None or done is None or done <= first[0]:
        return 0, math.nan
    return total - first[1], done - first[0]


def rates_to_run(rates: Sequence[int], required: Iterable[int], results: Mapping[int, bool]) -> list[int]:
    """The rates still to run, in order: every rate until one fails (``results``: rate -> sustained), then only
    the ``required`` ones."""
    failed = any(not ok for ok in results.values())
    return [r for r in rates if r not in results and (not failed or r in set(required))]


# --- the pipeline -------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streamapp.cli", *args], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)


def stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_listening(port: int, proc: subprocess.Popen, work: Path, timeout_s: float = 60.0) -> None:
    """Until the simulator accepts connections (under load it takes seconds; the feed would back off meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the simulator is not listening on {port}; logs in {work}")
        time.sleep(0.2)


def fresh_first_id() -> int:
    """A trade id above every earlier run's: the feed resumes after the last id on the raw topic and drops
    anything at or below it (ids from the clock in µs, times 1,000: a run of under a million trades a ms)."""
    return time.time_ns() // 1000 * 1000


def in_range(first: int, last: int) -> str:
    return f"exchange = '{EXCHANGE}' AND symbol = '{SYMBOL}' AND trade_seq BETWEEN {first} AND {last}"


class Poller(threading.Thread):
    """Runs ``query`` (rows of key, count) every ``interval_s`` on a client of its own; keeps each poll's
    (end time, counts) and its start time."""

    def __init__(self, settings: Settings, query: str, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.client = connect(settings)
        self.query = query
        self.interval_s = interval_s
        self.polls: list[tuple[float, dict]] = []
        self.starts: list[float] = []
        self.halt = threading.Event()
        self.error: BaseException | None = None

    @classmethod
    def silver(cls, settings: Settings, since_ms: int, interval_s: float) -> Poller:
        """Silver's count of BTC/USDT trades from ``since_ms`` (trade time; the primary key finds them)."""
        return cls(settings, f"SELECT '{SILVER_KEY}', count() FROM {tables.SILVER} WHERE exchange = '{EXCHANGE}' "
                             f"AND symbol = '{SYMBOL}' "
                             f"AND trade_time >= fromUnixTimestamp64Milli(toInt64({since_ms}), 'UTC')", interval_s)

    @classmethod
    def gold(cls, settings: Settings, since_ms: int, interval_s: float) -> Poller:
        """The trade count of each BTC/USDT 1m candle from ``since_ms``'s minute, keyed by window start (epoch s)."""
        return cls(settings, f"SELECT toUnixTimestamp(window_start), trade_count FROM {GOLD_1M} "
                             f"WHERE exchange = '{EXCHANGE}' AND symbol = '{SYMBOL}' "
                             f"AND window_start >= toDateTime({since_ms // 60000 * 60}, 'UTC')", interval_s)

    def latest(self) -> dict:
        return self.polls[-1][1]

    def poll(self) -> tuple[float, dict]:
        began = time.time()
        rows = self.client.query(self.query).result_rows
        counts = {key: int(n) for key, n in rows}
        self.starts.append(began)
        self.polls.append((time.time(), counts))
        return self.polls[-1]

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                began = time.monotonic()
                self.poll()
                self.halt.wait(max(0.0, self.interval_s - (time.monotonic() - began)))
        except BaseException as exc:  # reported by the caller
            self.error = exc

    def resolution_s(self) -> list[float]:
        """Per poll, from the previous poll's start to this one's end: how late a visible time may be."""
        return [end - start for (end, _), start in zip(self.polls[1:], self.starts[:-1])]


@contextlib.contextmanager
def paused(client, exchange: str = EXCHANGE) -> Iterator[None]:
    """The exchange's Kafka table detached (it reads nothing, its consumer leaves the group), then attached again."""
    client.command(f"DETACH TABLE {tables.kafka(exchange)}")
    try:
        yield
    finally:
        client.command(f"ATTACH TABLE {tables.kafka(exchange)}")


def skip_backlog(settings: Settings, exchange: str = EXCHANGE) -> None:
    """Point the exchange's Kafka table at the end of its normalized topic (call while it is paused): what other
    benchmarks wrote there (the throughput runs' output) is not the warehouse's to read here."""
    from throughput import end_offsets, set_group_offsets  # noqa: PLC0415  (bench/ is the script's directory)

    topic = topics.normalized(exchange)
    set_group_offsets(settings, groups.clickhouse(exchange), end_offsets(settings, topic), topic)


def prepare_warehouse(settings: Settings) -> None:
    """Create the pipeline topics (a fresh stack has none: the Kafka tables subscribe to them), apply pending
    migrations and start the binance Kafka table at the end of its topic."""
    ensure_topics(settings, topics.PIPELINE_TOPICS)
    client = connect(settings)
    for migration in migrations.pending(client, migrations.discover()):
        migrations.apply(client, settings, migration)
    with paused(client):
        skip_backlog(settings)


def run_rate(settings: Settings, rate: int, seconds: int, work: Path, env: dict, poll_s: float,
             drain_s: float, rule: Rule) -> dict:
    """One run at ``rate`` trades/s for ``seconds``, with a worker already running; the figures as a dict."""
    client = connect(settings)
    capture = work / f"capture-{rate}.jsonl.gz"
    start_ms = int(time.time() * 1000)  # trade times from here: after every earlier run's (each drained before)
    first, last = synthetic_binance(capture, rate=rate, seconds=seconds, first_id=fresh_first_id(),
                                    start_ms=start_ms)
    total = last - first + 1
    pollers = {"silver": Poller.silver(settings, start_ms, poll_s), "gold": Poller.gold(settings, start_ms, poll_s)}
    baseline = {kind: poller.poll()[1] for kind, poller in pollers.items()}
    for poller in pollers.values():
        poller.start()
    port = free_port()
    simulator = spawn(["exchange", "serve", "--capture", str(capture), "--speed", "1", "--port", str(port)],
                      work / f"simulator-{rate}.log", env)
    wait_listening(port, simulator, work)
    feed = spawn(["feed", "run", "--exchange", EXCHANGE, "--symbols", "BTCUSDT", "--no-backfill",
                  "--url", f"ws://127.0.0.1:{port}/stream", "--metrics-port", "0"], work / f"feed-{rate}.log", env)
    expected: Counter = Counter()
    drained = False
    try:
        ends = time.monotonic() + seconds
        deadline = ends + drain_s
        last_count, last_change = -1, time.monotonic()
        while time.monotonic() < deadline and all(p.is_alive() for p in pollers.values()):
            time.sleep(0.5)
            count = pollers["silver"].latest().get(SILVER_KEY, 0)
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            elif time.monotonic() > ends and time.monotonic() - last_change > STALLED_S:
                break  # nothing more arrives: the feed lost the rest (see its log) or the pipeline stopped
            if pollers["silver"].latest().get(SILVER_KEY, 0) - baseline["silver"].get(SILVER_KEY, 0) >= total:
                if not expected:
                    expected = Counter(r[0] for r in client.query(
                        f"SELECT toUnixTimestamp(toStartOfMinute(trade_time)) FROM {tables.SILVER} "
                        f"WHERE {in_range(first, last)}").result_rows)
                gold = pollers["gold"].latest()
                if all(gold.get(w, 0) - baseline["gold"].get(w, 0) >= n for w, n in expected.items()):
                    drained = True
                    break
        time.sleep(2 * poll_s)
    finally:
        stop(feed, simulator)
        for poller in pollers.values():
            poller.halt.set()
            poller.join(30)
    if errors := [p.error for p in pollers.values() if p.error]:
        raise SystemExit(f"a poller failed: {errors[0]}")
    rows = client.query(
        "SELECT toUnixTimestamp(toStartOfMinute(trade_time)), toUnixTimestamp64Micro(receive_time), "
        f"toUnixTimestamp64Micro(ingest_time) FROM {tables.SILVER} WHERE {in_range(first, last)} "
        "ORDER BY ingest_time, trade_seq").result_rows
    if not rows:
        raise SystemExit(f"no trade of the {rate}/s run reached Silver; logs in {work}")
    receive = [r[1] / 1e6 for r in rows]
    to_read = [(r[2] - r[1]) / 1e3 for r in rows]
    silver_seen = visible_at([SILVER_KEY] * len(rows), pollers["silver"].polls, baseline["silver"])
    gold_seen = visible_at([r[0] for r in rows], pollers["gold"].polls, baseline["gold"])
    to_silver = [(t - r) * 1e3 for t, r in zip(silver_seen, receive) if t is not None]
    to_gold = [(t - r) * 1e3 for t, r in zip(gold_seen, receive) if t is not None]
    span = max(receive) - min(receive)
    received_rate = len(rows) / span if span > 0 else math.nan
    p99s = window_p99s(receive, [ms / 1e3 for ms in to_read])
    ok, why = sustained(rate, received_rate, p99s, drained and len(rows) == total, rule)
    resolution = {kind: poller.resolution_s() for kind, poller in pollers.items()}
    return {
        "rate": rate, "seconds": seconds, "trades": total, "in_silver": len(rows), "received_per_s": received_rate,
        "receive_to_read_ms": summary(to_read), "receive_to_visible_in_silver_ms": summary(to_silver),
        "receive_to_visible_in_gold_1m_ms": summary(to_gold),
        "gold_trades_unseen": sum(t is None for t in gold_seen),
        "poll_resolution_ms": {kind: {"p50": percentile(r, 0.5) * 1e3, "p99": percentile(r, 0.99) * 1e3}
                               for kind, r in resolution.items()},
        "polls": {kind: len(poller.polls) for kind, poller in pollers.items()},
        "window_p99_s": p99s, "sustained": ok, "verdict": why,
        "load_average": os.getloadavg()[0],
    }


def latency_section(settings: Settings, args: argparse.Namespace, work: Path) -> dict:
    rule = Rule(args.lag_bound, args.lag_slack)
    env = {**os.environ, "STREAMAPP_WORKER_WEB_PORT": str(free_port()),
           "STREAMAPP_WORKER_METRICS_PORT": str(free_port())}
    rates = [int(r) for r in args.rates.split(",")]
    required = [int(r) for r in args.percentile_rates.split(",")]
    runs: dict[int, dict] = {}
    worker = spawn(["worker", "-l", "warning"], work / "worker.log", env)
    try:
        time.sleep(8)  # the worker joins its group and registers the schema
        while todo := rates_to_run(rates, required, {r: run["sustained"] for r, run in runs.items()}):
            rate = todo[0]
            print(f"latency: {rate:,} trades/s for {args.seconds} s ...", flush=True)
            runs[rate] = run_rate(settings, rate, args.seconds, work, env, args.poll_ms / 1e3, args.drain_s, rule)
            print(f"  {row(runs[rate])}", flush=True)
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited with {worker.returncode}; logs in {work}")
            if not runs[rate]["sustained"] and runs[rate]["in_silver"] < runs[rate]["trades"]:
                print("  not drained: later rates would start behind, so the search stops here", flush=True)
                break
    finally:
        stop(worker)
    held = [r for r, run in runs.items() if run["sustained"]]
    return {"rule": rule.__dict__, "runs": list(runs.values()), "highest_sustained_rate": max(held, default=None)}


def ingest_section(settings: Settings, records: int) -> dict:
    """Time a backlog of ``records`` normalized trades through the binance Kafka table into Silver and Gold."""
    import asyncio  # noqa: PLC0415

    from confluent_kafka import Producer  # noqa: PLC0415
    from throughput import produce  # noqa: PLC0415  (bench/ is the script's directory)

    from streamapp.clients.registry import register_trade_schema  # noqa: PLC0415
    from streamapp.codecs.avro import TradeAvroCodec  # noqa: PLC0415
    from streamapp.dispatch import Dispatcher  # noqa: PLC0415
    from streamapp.normalize import binance  # noqa: PLC0415
    from streamapp.normalize.symbols import SymbolMap  # noqa: PLC0415

    client = connect(settings)
    topic = topics.normalized(EXCHANGE)
    first = fresh_first_id()
    rate = 1000  # trade times: 1,000 a second, ending now
    start_ms = int(time.time() * 1000) - records * 1000 // rate
    schema_id = asyncio.run(register_trade_schema(settings, topic))
    dispatcher = Dispatcher(EXCHANGE, binance.normalize, SymbolMap.binance(), TradeAvroCodec(schema_id),
                            backfill=binance.normalize_backfill, max_skew_s=settings.clock_skew_s)
    producer = Producer({**settings.kafka_client_config(), "linger.ms": 50, "compression.type": "lz4",
                         "enable.idempotence": True})
    with paused(client):
        skip_backlog(settings)
        print(f"ingest: writing {records:,} normalized trades to {topic} (Kafka table detached) ...", flush=True)
        frames = synthetic_binance_frames(rate=rate, seconds=-(-records // rate), first_id=first, start_ms=start_ms)
        for n, (ts, frame) in enumerate(itertools.islice(frames, records)):
            hdrs = [(headers.RECEIVE_TIME_US, str(ts * 1000).encode())]
            for out in dispatcher.dispatch(frame, b"BTCUSDT", hdrs, 0, n):
                produce(producer, topic, out.value, out.key, headers=out.headers)
        if producer.flush(120):
            raise SystemExit("the broker did not take the ingest input in 120 s")
        silver, gold = Poller.silver(settings, start_ms, 0.1), Poller.gold(settings, start_ms, 0.1)
        silver_base, gold_base = silver.poll()[1].get(SILVER_KEY, 0), gold.poll()[1]
    attached = time.time()
    deadline = time.monotonic() + 900
    silver_all = gold_all = False
    while not (silver_all and gold_all):
        if time.monotonic() > deadline:
            raise SystemExit(f"ingest: Silver holds {silver.latest().get(SILVER_KEY, 0) - silver_base:,} "
                             f"of {records:,} after 900 s")
        if not silver_all:
            silver_all = silver.poll()[1].get(SILVER_KEY, 0) - silver_base >= records
        gold_all = sum(n - gold_base.get(w, 0) for w, n in gold.poll()[1].items()) >= records
        time.sleep(0.1)
    result: dict = {"records": records, "load_average": os.getloadavg()[0]}
    for kind, polls in (("silver", [(t, c.get(SILVER_KEY, 0)) for t, c in silver.polls]),
                        ("gold", [(t, sum(c.values())) for t, c in gold.polls])):
        before = polls[0][1]
        timed, seconds = ingest_span(polls[1:], before, records)
        first_seen = next(t for t, n in polls[1:] if n > before)
        result[kind] = {"timed": timed, "seconds": seconds, "per_s": timed / seconds if timed else math.nan,
                        "attach_to_first_seen_s": first_seen - attached}
    return result


# --- report --------------------------------------------------------------------------------------------------------

def row(run: dict) -> str:
    def ms(s: dict, missing: int) -> str:  # * : of the trades that arrived, when not all did
        mark = "*" if missing else ""
        return f"{s['p50']:,.0f} / {s['p95']:,.0f} / {s['p99']:,.0f}{mark}"
    missing = run["trades"] - run["in_silver"]
    return (f"| {run['rate']:,} | {run['received_per_s']:,.0f} | {run['in_silver']:,} of {run['trades']:,} "
            f"| {ms(run['receive_to_read_ms'], missing)} | {ms(run['receive_to_visible_in_silver_ms'], missing)} "
            f"| {ms(run['receive_to_visible_in_gold_1m_ms'], missing + run['gold_trades_unseen'])} | {run['poll_resolution_ms']['silver']['p50']:.0f}, "
            f"{run['poll_resolution_ms']['gold']['p50']:.0f} "
            f"| {', '.join(f'{p:.1f}' for p in run['window_p99_s'])} "
            f"| {'yes' if run['sustained'] else 'no: ' + run['verdict']} | {run['load_average']:.1f} |")


def markdown(result: dict) -> str:
    parts = [f"Freshness and warehouse ingest, {result['when']}, {result['cores']} cores; load average at the start "
             f"{result['load_average_at_start']:.1f}, at the end {result['load_average_at_end']:.1f}."]
    if "latency" in result:
        lat = result["latency"]
        rule = lat["rule"]
        parts += ["", "| trades/s | received/s | in Silver | receive → read by ClickHouse, ms p50 / p95 / p99 "
                  "| receive → visible in Silver, ms | receive → visible in `gold_ohlcv_1m_final`, ms "
                  "| poll resolution ms p50, Silver, Gold | p99 per 10 s window, s | sustained | load |",
                  "|---:|---:|---:|---|---|---|---:|---|---|---:|"]
        parts += [row(run) for run in lat["runs"]]
        best = lat["highest_sustained_rate"]
        parts += ["", f"Highest rate sustained for {lat['runs'][0]['seconds']} s with bounded lag: "
                  f"{f'{best:,} trades/s' if best else 'none of the rates run'} (every trade reached Silver and Gold; "
                  f"received >= {rule['min_fraction']:.0%} of the rate; after the first 10 s, no 10 s window's "
                  f"receive → Silver p99 above {rule['bound_s']:.1f} s, and the last window's at most "
                  f"{rule['slack_s']:.1f} s above the second's). * marks percentiles of only the trades that arrived: "
                  "the rest were still on their way, or lost upstream (a feed that reconnects skips what was sent "
                  "meanwhile: backfill is off here; see the feed's log for GAP lines)."]
    if "ingest" in result:
        ing = result["ingest"]
        parts += ["", f"Warehouse ingest: {ing['records']:,} normalized trades waiting on the topic, the Kafka table "
                  "attached; timed from the first poll (every 0.1 s) that saw any of them to the first that saw all.",
                  "", "| warehouse ingest | trades timed | seconds | trades/s | attach → first seen, s |",
                  "|---|---:|---:|---:|---:|"]
        for kind, what in (("silver", "Kafka engine → Silver"), ("gold", "Kafka engine → `gold_ohlcv_1m_final`")):
            r = ing[kind]
            parts.append(f"| {what} | {r['timed']:,} | {r['seconds']:.1f} | {r['per_s']:,.0f} "
                         f"| {r['attach_to_first_seen_s']:.1f} |")
    return "\n".join(parts) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rates", default="1000,2000,5000,8000,12000,16000,24000",
                        help="trades/s to run, ascending; the climb stops at the first rate not sustained")
    parser.add_argument("--percentile-rates", default="1000,5000", help="rates that run even after a failure")
    parser.add_argument("--seconds", type=int, default=60, help="how long each rate runs")
    parser.add_argument("--poll-ms", type=float, default=50.0, help="how often the poller asks the warehouse")
    parser.add_argument("--drain-s", type=float, default=180.0, help="how long after a run's end its trades may take")
    parser.add_argument("--lag-bound", type=float, default=Rule.bound_s, help="seconds: see sustained()")
    parser.add_argument("--lag-slack", type=float, default=Rule.slack_s, help="seconds: see sustained()")
    parser.add_argument("--ingest-records", type=int, default=300_000, help="normalized trades for the ingest run")


def run(settings: Settings, args: argparse.Namespace, sections: set[str], out: Path) -> dict:
    """Run the ``latency`` and/or ``ingest`` sections on a running stack; save and return the result."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    work = out / f"logs-freshness-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cores": os.cpu_count(),
                    "load_average_at_start": os.getloadavg()[0]}
    prepare_warehouse(settings)
    if "ingest" in sections:
        result["ingest"] = ingest_section(settings, args.ingest_records)
    if "latency" in sections:
        result["latency"] = latency_section(settings, args, work)
    result["load_average_at_end"] = os.getloadavg()[0]
    text = markdown(result)
    print("\n" + text)
    (out / "freshness.md").write_text(text)
    (out / "freshness.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {out / 'freshness.md'} and {out / 'freshness.json'}; logs in {work}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="latency,ingest", help="latency and/or ingest")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    add_arguments(parser)
    args = parser.parse_args()
    run(get_settings(), args, set(args.sections.split(",")), args.out)


if __name__ == "__main__":
    main()
