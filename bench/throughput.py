"""``make bench``: normalizer throughput per worker process beside two baselines, measured in one run.

Starts its own stack (broker and registry under ``$STREAMAPP_HOME``, on the
ports of the ``STREAMAPP_*`` settings; the Makefile gives it ``.stack-bench/``
and ports 29092/28081, and 28123 for the warehouse of the latency and ingest
sections), builds the input from the real trades of the bundled captures
(``streamapp/captures/binance_*_trades_*.jsonl.gz``, 13,049 trades) copied until there are ``--records`` (default 1,000,000), each copy with fresh trade ids,
spread over the raw topic's partitions (3) a whole copy at a time, and runs,
one after the other on that same input, each from the input's first offset:

* ``plain loop``: bench/normalizer.py, confluent-kafka, same normalization
  and encoding, at-least-once, one process;
* ``pass-through, batches``: a Faust agent forwarding the raw bytes unchanged
  through :mod:`streamapp.eos` (the worker's machinery with free normalization);
* ``pass-through, Faust events``: a stock Faust agent iterating its stream and
  sending each event (Faust's per-event path; ``--stream-records``, fewer: it is slow);
* ``worker x1, x2, x3``: ``streamapp worker`` processes sharing the 3 partitions.

Each is timed from its group's first committed offset once all its processes
have joined the group (start-up, the first rebalances and shutdown excluded) to
the commit of the last input record, as records/s in total and
per process, and as a ratio to the plain loop per process. CPU seconds (over
the timed window) and peak RSS are read from ``/proc`` for every process;
records per CPU second says what each does with the CPU it gets, which varies
less than wall-clock rates when other processes compete for the cores.
Machines here are shared and noisy: compare the ratios of one run, not
absolute figures across runs. The table is printed and saved as JSON and
Markdown (``--out``, default ``bench-results/``).

Then (``--sections``, default all three) it starts the warehouse and runs
bench/freshness.py's sections: ``latency`` (receive -> Silver and receive ->
visible in ``gold_ohlcv_1m_final`` at 1,000 and 5,000 trades/s, and the highest
rate sustained for a minute with bounded lag) and ``ingest`` (trades/s through
the Kafka engine into Silver and Gold), saved as ``freshness.{json,md}``.

    python bench/throughput.py [--records 1000000] [--workers 1,2,3] [--out bench-results]
    python bench/throughput.py --sections latency --rates 1000,5000   # only the latency runs
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson
from confluent_kafka import Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamapp import groups, topics  # noqa: E402
from streamapp.clients.kafka import ensure_topics  # noqa: E402
from streamapp import headers  # noqa: E402
from streamapp.settings import Settings, get_settings  # noqa: E402
from streamapp.stack import services  # noqa: E402
from streamapp.clients.clickhouse import connect  # noqa: E402

import freshness  # noqa: E402  (bench/freshness.py: latency and warehouse ingest)

PASSTHROUGH_GROUP = {"batch": "streamapp-bench-passthrough-batch", "stream": "streamapp-bench-passthrough-stream"}

CAPTURES = sorted((REPO / "streamapp" / "captures").glob("binance_*_trades_*.jsonl.gz"))
RAW = topics.raw("binance")
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    name: str
    processes: int
    records: int
    seconds: float
    cpu_s: list[float] = field(default_factory=list)
    peak_rss_mib: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    @property
    def per_process(self) -> float:
        return self.rate / self.processes

    @property
    def per_cpu_second(self) -> float:
        """Records per CPU second of its processes: what it does with the CPU it gets (load-independent-ish)."""
        return self.records / sum(self.cpu_s)


def real_trades() -> list[dict]:
    """The trade events of the bundled Binance captures (combined-stream frames), in capture order."""
    frames = []
    for path in CAPTURES:
        with gzip.open(path) as lines:
            for line in lines:
                frame = orjson.loads(orjson.loads(line)["frame"])
                if frame.get("data", {}).get("e") == "trade":
                    frames.append(frame)
    if not frames:
        raise SystemExit(f"no Binance trades in {CAPTURES}; the bench reads streamapp/captures/binance_*_trades_*.jsonl.gz")
    return frames


def build_input(records: int) -> list[list[bytes]]:
    """``records`` frames: copies of the real trades, each copy's ids moved past every id before it."""
    trades = real_trades()
    ids = [frame["data"]["t"] for frame in trades]
    span = max(ids) - min(ids) + 1
    copies, copy = [], 1
    total = 0
    while total < records:
        shift = copy * span  # fresh ids: copy k's ids follow copy k-1's, never the capture's own
        part = []
        for frame in trades[: records - total]:
            data = {**frame["data"], "t": frame["data"]["t"] + shift}
            part.append(orjson.dumps({**frame, "data": data}))
        copies.append(part)
        total += len(part)
        copy += 1
    return copies


def produce_input(settings: Settings, copies: list[list[bytes]],
                  partitions: int) -> tuple[dict[int, int], dict[int, int]]:
    """Write the copies to the raw topic, copy k to partition k mod ``partitions``; (start, end) offsets."""
    start = end_offsets(settings, RAW)
    producer = Producer({**settings.kafka_client_config(), "linger.ms": 50, "compression.type": "lz4",
                         "enable.idempotence": True})
    now = str(time.time_ns() // 1000).encode()
    for k, copy in enumerate(copies):
        for frame in copy:
            produce(producer, RAW, frame, b"BTCUSDT", partition=k % partitions,
                    headers=[(headers.RECEIVE_TIME_US, now)])
    if producer.flush(120):
        raise SystemExit("the broker did not take the whole input in 120 s")
    return start, end_offsets(settings, RAW)


def produce(producer: Producer, topic: str, value: bytes, key: bytes, **options: object) -> None:
    """``producer.produce``, waiting for room when its local queue is full (benchmarks outrun the broker)."""
    while True:
        try:
            producer.produce(topic, value, key, **options)
            return
        except BufferError:
            producer.poll(0.1)


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"bench-{uuid.uuid4().hex}"})
    try:
        for _ in range(50):
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            if meta.error is None and all(p.leader >= 0 for p in meta.partitions.values()):
                break
            time.sleep(0.2)
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in meta.partitions}
    finally:
        consumer.close()


def set_group_offsets(settings: Settings, group: str, offsets: dict[int, int], topic: str = RAW) -> None:
    """Point ``group`` at ``offsets`` of ``topic`` (the group must have no members)."""
    admin = AdminClient(settings.kafka_client_config())
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, o) for p, o in offsets.items()])
    deadline = time.monotonic() + 60
    while True:
        try:
            admin.alter_consumer_group_offsets([request])[group].result(30)
            return
        except Exception as exc:  # the group's last members may still be leaving
            if time.monotonic() > deadline:
                raise SystemExit(f"cannot reset {group}'s offsets: {exc}") from exc
            time.sleep(1)


def group_settled(admin: AdminClient, group: str, members: int) -> bool:
    """Whether all ``members`` have joined ``group`` and no rebalance is under way."""
    description = admin.describe_consumer_groups([group])[group].result(10)
    return description.state == ConsumerGroupState.STABLE and len(description.members) == members


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def proc_peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(settings: Settings, name: str, group: str, commands: list[list[str]], start: dict[int, int],
          end: dict[int, int], logs: Path, timeout_s: float) -> Run:
    """Start ``commands`` (one process each) and time ``group`` from its first commit to the input's end."""
    set_group_offsets(settings, group, start)
    want = sum(end[p] - start[p] for p in end)
    watcher = Consumer({**settings.kafka_client_config(), "group.id": group})
    admin = AdminClient(settings.kafka_client_config())
    parts = [TopicPartition(RAW, p) for p in sorted(end)]
    procs = []
    for i, command in enumerate(commands):
        env = {**os.environ, "STREAMAPP_WORKER_WEB_PORT": str(free_port()),
               "STREAMAPP_WORKER_METRICS_PORT": str(free_port())}
        out = (logs / f"{name.replace(' ', '_').replace(',', '')}-{i}.log").open("wb")
        procs.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO))
    try:
        first_at = first_done = None
        cpu_at_first: list[float] = []
        deadline = time.monotonic() + timeout_s
        while True:
            committed = {tp.partition: tp.offset for tp in watcher.committed(parts, timeout=10)}
            done = sum(max(0, committed.get(p, -1) - start[p]) for p in end)
            now = time.monotonic()
            if first_at is None and done > 0 and group_settled(admin, group, len(procs)):
                first_at, first_done = now, done
                cpu_at_first = [proc_cpu_s(p.pid) for p in procs]
            if done >= want:
                break
            for p in procs:
                if p.poll() is not None and p.returncode != 0:
                    raise SystemExit(f"{name}: a process exited with {p.returncode}; see {logs}")
            if now > deadline:
                raise SystemExit(f"{name}: {done} of {want} records in {timeout_s:.0f} s; see {logs}")
            time.sleep(0.05)
        cpu = [proc_cpu_s(p.pid) - c if p.poll() is None else float("nan") for p, c in zip(procs, cpu_at_first)]
        rss = [proc_peak_rss_mib(p.pid) if p.poll() is None else float("nan") for p in procs]
        return Run(name, len(procs), want - first_done, now - first_at, cpu, rss)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        watcher.close()


def table(runs: list[Run], plain: Run) -> str:
    lines = [
        "| run | processes | records timed | seconds | records/s | per process | per process / plain loop "
        "| records per CPU s | CPU s per process | peak RSS MiB per process |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.name} | {r.processes} | {r.records:,} | {r.seconds:.1f} | {r.rate:,.0f} | {r.per_process:,.0f} "
            f"| {r.per_process / plain.per_process:.2f} | {r.per_cpu_second:,.0f} "
            f"| {', '.join(f'{c:.1f}' for c in r.cpu_s)} "
            f"| {', '.join(f'{m:.0f}' for m in r.peak_rss_mib)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="input records (copies of the captures)")
    parser.add_argument("--stream-records", type=int, default=20_000,
                        help="records for the per-event Faust pass-through (a prefix of the input; it is slow)")
    parser.add_argument("--workers", default="1,2,3", help="worker process counts to run")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results", help="where the JSON and Markdown go")
    parser.add_argument("--worker-log-level", default="warning", choices=["debug", "info", "warning", "error"],
                        help="log level of the worker processes (logs under --out)")
    parser.add_argument("--baselines", default="plain,batch,events",
                        help="baselines to run before the workers: plain (loop), batch and events (pass-throughs); "
                             "the plain loop first, as ratios are to the first run")
    parser.add_argument("--keep-stack", action="store_true", help="leave the stack running afterwards")
    parser.add_argument("--sections", default="throughput,latency,ingest",
                        help="what to run: throughput (this file), latency and ingest (bench/freshness.py, which "
                             "also need the warehouse)")
    freshness.add_arguments(parser.add_argument_group("latency and ingest (bench/freshness.py)"))
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    if unknown := sections - {"throughput", "latency", "ingest"}:
        parser.error(f"unknown sections {sorted(unknown)}: choose from throughput, latency, ingest")
    settings = get_settings()
    wanted = ("broker", "registry", "warehouse") if sections & {"latency", "ingest"} else ("broker", "registry")
    which = tuple(s for s in services.SERVICES if s.name in wanted)
    already = {row.name for row in services.status(settings, which) if row.running}
    # The warehouse starts after the throughput runs (its Kafka tables would read their output meanwhile);
    # one already running has its binance Kafka table paused for them.
    services.up(settings, tuple(s for s in which if s.name != "warehouse"))
    try:
        if "throughput" in sections:
            warehouse = services.service(settings, "warehouse")
            if any(row.running for row in services.status(settings, (warehouse,))):
                freshness.prepare_warehouse(settings)
                with freshness.paused(connect(settings)):
                    run_all(settings, args)
                    freshness.skip_backlog(settings)  # the runs' output is not for the warehouse
            else:
                run_all(settings, args)
        if sections & {"latency", "ingest"}:
            services.up(settings, which)
            freshness.run(settings, args, sections, args.out)
    finally:
        if not args.keep_stack:
            for svc in reversed(which):
                if svc.name not in already:
                    services.stop(settings, svc)


def run_all(settings: Settings, args: argparse.Namespace) -> None:
    partitions = settings.topic_partitions
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    logs = args.out / f"logs-{stamp}"
    logs.mkdir(parents=True, exist_ok=True)
    plain_target, batch_target, stream_target = (f"bench.{what}" for what in ("plain", "passthrough.batch",
                                                                              "passthrough.stream"))
    ensure_topics(settings, [*topics.PIPELINE_TOPICS, plain_target, batch_target, stream_target])
    print(f"building {args.records:,} input records from {', '.join(p.name for p in CAPTURES)} ...", flush=True)
    start, end = produce_input(settings, build_input(args.records), partitions)
    print(f"input: {sum(end[p] - start[p] for p in end):,} records on {RAW} partitions {sorted(end)}", flush=True)
    # The per-event pass-through reads a prefix of the input: the first stream-records of each partition's share.
    share = args.stream_records // len(end)
    stream_end = {p: min(end[p], start[p] + share) for p in end}

    py = sys.executable
    bench = str(REPO / "bench")
    total = sum(end[p] - start[p] for p in end)
    plain_group = f"bench-plain-{stamp}"
    specs = [
        ("plain loop", plain_group, [[py, f"{bench}/normalizer.py", "--group", plain_group, "--target", plain_target,
                                      "--records", str(total)]], end),
        ("pass-through, batches (eos)", PASSTHROUGH_GROUP["batch"],
         [[py, f"{bench}/passthrough.py", "batch", batch_target, "worker", "-l", "warn"]], end),
        ("pass-through, Faust events", PASSTHROUGH_GROUP["stream"],
         [[py, f"{bench}/passthrough.py", "stream", stream_target, "worker", "-l", "warn"]], stream_end),
    ]
    wanted = {"plain loop": "plain", "pass-through, batches (eos)": "batch", "pass-through, Faust events": "events"}
    specs = [spec for spec in specs if wanted[spec[0]] in args.baselines.split(",")]
    for n in (int(x) for x in args.workers.split(",")):
        specs.append((f"worker x{n}", groups.NORMALIZER,
                      [[py, "-m", "streamapp.cli", "worker", "-l", args.worker_log_level]] * n, end))
    runs = []
    for name, group, commands, until in specs:
        runs.append(timed(settings, name, group, commands, start, until, logs, timeout_s=1800.0))
        print(f"{name}: {runs[-1].rate:,.0f} records/s", flush=True)

    plain = runs[0]  # without the plain loop (--baselines), ratios are to the first run
    text = table(runs, plain)
    header = (f"Normalizer throughput, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores "
              f"(load average at the end: {os.getloadavg()[0]:.1f}); {args.records:,} input records on {len(end)} "
              "partitions. Ratios are within this run; absolute figures vary with the machine's load.\n")
    print("\n" + header + "\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "throughput.md").write_text(header + "\n" + text + "\n")
    (args.out / "throughput.json").write_text(json.dumps({
        "when": stamp, "cores": os.cpu_count(), "input_records": args.records, "partitions": len(end),
        "load_average_at_end": os.getloadavg()[0],
        "runs": [{**asdict(r), "records_per_s": r.rate, "per_process": r.per_process,
                  "per_process_vs_plain_loop": r.per_process / plain.per_process,
                  "records_per_cpu_second": r.per_cpu_second} for r in runs],
    }, indent=2) + "\n")
    print(f"\nsaved {args.out / 'throughput.md'} and {args.out / 'throughput.json'}; logs in {logs}")


if __name__ == "__main__":
    main()
