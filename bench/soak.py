"""Soak: the whole pipeline for a given time at a given rate, watched by a real Prometheus.

Starts its own local stack with Prometheus (`stack up --with-prometheus`; data dir and ports
from the settings, which `make soak` points at .stack-soak/ and its own ports), applies the
migrations, and runs what `pipeline up` runs, on free ports: normalizer worker(s), the
exchange simulator serving a synthetic Binance capture at --rate trades/s with fresh trade
ids (bench/freshness.py's, so Silver keeps every trade), and the Binance feed reading it.
Prometheus scrapes every one of them. Every --every seconds it prints one row: per process
resident memory and CPU, the normalizer's consumer lag, the ClickHouse Kafka tables' lag,
the DLQ count and Silver's rows of this run. Figures Prometheus has are read from its query
API (process RSS and CPU from prometheus_client's process collector, the lag gauge, the
rejected-frames counter, the feed's published frames); the stack's own services, which serve
no /metrics, from /proc; the Kafka tables' lag from the broker's committed offsets; Silver from
the warehouse. It ends with a verdict (memory slope per process, lag maxima), saves
bench-results/soak-<time>.{json,md} and stops everything it started.

    make soak SOAK_ARGS="--minutes 30 --rate 2000"
    python bench/soak.py --minutes 3 --rate 2000      # with the settings of the environment
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from freshness import fresh_first_id, free_port  # noqa: E402

from streamapp import pipeline, tables  # noqa: E402
from streamapp.clients import prometheus as prom  # noqa: E402
from streamapp.clients.clickhouse import connect  # noqa: E402
from streamapp.exchanges import BINANCE  # noqa: E402
from streamapp.operate.status import group_lags  # noqa: E402
from streamapp.settings import Settings, get_settings  # noqa: E402
from streamapp.simulator.capture import synthetic_binance  # noqa: E402
from streamapp.stack import services  # noqa: E402
from streamapp.stack.services import streamapp_command  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1 << 20


def session_usage(sid: int) -> tuple[float, float] | None:
    """Resident bytes and CPU seconds of every process in session ``sid`` (a service and its children), from /proc."""
    rss = cpu = 0.0
    found = False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) != sid:  # fields[3]: session id (stat field 6)
                continue
            cpu += (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
            rss += int((entry / "statm").read_text().split()[1]) * PAGE
            found = True
        except (OSError, ValueError, IndexError):
            continue
    return (rss, cpu) if found else None


class Soak:
    def __init__(self, settings: Settings, args: argparse.Namespace, work: Path, repeat: int) -> None:
        self.settings, self.args, self.work, self.repeat = settings, args, work, repeat
        self.client = connect(settings)
        self.url = settings.prometheus_url
        self.samples: list[dict] = []
        self.proc_cpu: dict[str, tuple[float, float]] = {}  # /proc services: last (monotonic, cpu s)

    # --- processes ------------------------------------------------------------------------
    def processes(self, capture: Path) -> tuple[services.Service, ...]:
        simulator = dataclasses.replace(
            pipeline.SIMULATOR, describe=f"exchange simulator serving a synthetic capture at {self.args.rate}/s",
            command=lambda s: streamapp_command("exchange", "serve", "--speed", "1", "--port", str(s.simulator_port),
                                               "--capture", str(capture), "--repeat", str(self.repeat),
                                               "--drop-every", str(self.args.drop_every)))
        return (*pipeline.FLEET[:self.args.workers], simulator, pipeline.feed(BINANCE, live=False))

    # --- one row --------------------------------------------------------------------------
    def sample(self, started: float, first: int, last: int, scraped: tuple[services.Service, ...]) -> dict:
        now = time.monotonic()
        row: dict = {"minute": round((now - started) / 60, 2), "utc": datetime.now(timezone.utc).strftime("%H:%M:%S"),
                     "load1": os.getloadavg()[0], "processes": {}}
        window = f"{max(2 * self.settings.prometheus_scrape_interval_s, min(60.0, self.args.every)):.0f}s"
        rss = {m.get("service"): v for m, v in prom.query(self.url, "process_resident_memory_bytes")}
        cpu = {m.get("service"): v for m, v in prom.query(self.url, f"rate(process_cpu_seconds_total[{window}])")}
        up = {m.get("service"): v for m, v in prom.query(self.url, "up")}
        for name in [svc.name for svc in scraped] + ["prometheus"]:
            row["processes"][name] = {"source": "prometheus", "up": up.get(name),
                                      "rss_mib": rss[name] / MIB if name in rss else None,
                                      "cpu_pct": 100 * cpu[name] if name in cpu else None}
        for svc in services.stack_services(self.settings):
            if svc.name == "prometheus":
                continue
            pid = services.read_pid(self.settings, svc.name)
            usage = session_usage(pid) if pid else None
            entry = {"source": "/proc", "rss_mib": None, "cpu_pct": None}
            if usage is not None:
                entry["rss_mib"] = usage[0] / MIB
                before = self.proc_cpu.get(svc.name)
                if before is not None:
                    entry["cpu_pct"] = 100 * (usage[1] - before[1]) / (now - before[0])
                self.proc_cpu[svc.name] = (now, usage[1])
            row["processes"][svc.name] = entry
        row["normalizer_lag"] = prom.value(self.url, "sum(streamapp_normalizer_consumer_lag)")
        row["dlq"] = prom.value(self.url, "sum(streamapp_normalizer_rejected_total)") or 0
        row["feed_rate"] = prom.value(
            self.url, f'sum(rate(streamapp_feed_frames_published_total{{exchange="binance"}}[{window}]))')
        row["published"] = prom.value(self.url, 'sum(streamapp_feed_frames_published_total{exchange="binance"})')
        lags = group_lags(self.settings)
        row["group_lag"] = lags
        row["clickhouse_lag"] = lags.get(f"clickhouse-{BINANCE}")
        row["silver_rows"] = self.client.command(
            f"SELECT count() FROM {tables.SILVER} WHERE exchange = 'binance' AND symbol = 'BTC/USDT' "
            f"AND trade_seq BETWEEN {first} AND {last}")
        return row

    def print_row(self, row: dict) -> None:
        procs = "  ".join(f"{name} {p['rss_mib']:.0f}M/{p['cpu_pct']:.0f}%" if p["rss_mib"] is not None
                          and p["cpu_pct"] is not None else f"{name} -" for name, p in row["processes"].items())
        print(f"[{row['utc']} +{row['minute']:.1f}m load {row['load1']:.1f}] feed {row['feed_rate'] or 0:,.0f}/s  "
              f"silver {row['silver_rows']:,}  lag normalizer {_n(row['normalizer_lag'])} clickhouse "
              f"{_n(row['clickhouse_lag'])}  dlq {row['dlq']:.0f}  |  {procs}", flush=True)


def _n(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def slope_mib_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (minute, MiB)."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else None


def verdict(samples: list[dict], args: argparse.Namespace) -> dict:
    """Memory slope per process after warm-up (the first fifth of the run, at least 2 minutes), lag maxima."""
    warm = max(2.0, args.minutes / 5)
    steady = [s for s in samples if s["minute"] >= warm and s.get("phase") == "load"]
    memory = {}
    for name in samples[-1]["processes"]:
        points = [(s["minute"], s["processes"][name]["rss_mib"]) for s in steady
                  if s["processes"].get(name, {}).get("rss_mib") is not None]
        slope = slope_mib_per_min(points)
        mean = sum(y for _, y in points) / len(points) if points else None
        # flat: the fitted growth over the whole steady window is under 5% of the mean (or 16 MiB)
        growth = slope * (points[-1][0] - points[0][0]) if slope is not None else None
        memory[name] = {"slope_mib_per_min": slope, "mean_mib": mean, "growth_mib": growth,
                        "max_mib": max((y for _, y in points), default=None),
                        "flat": None if growth is None else abs(growth) <= max(16.0, 0.05 * mean)}
    load = [s for s in samples if s.get("phase") == "load"]
    max_norm = max((s["normalizer_lag"] or 0 for s in load), default=None)
    max_ch = max((s["clickhouse_lag"] or 0 for s in load), default=None)
    bound = args.rate * 10  # ten seconds of trades
    return {"warm_up_minutes": warm, "memory": memory,
            "max_normalizer_lag": max_norm, "max_clickhouse_lag": max_ch, "lag_bound": bound,
            "lag_bounded": max_norm is not None and max_norm <= bound and (max_ch or 0) <= bound,
            "memory_flat": all(m["flat"] for m in memory.values() if m["flat"] is not None)}


def markdown(result: dict) -> str:
    args, samples, v = result["args"], result["samples"], result["verdict"]
    names = list(samples[-1]["processes"])
    lines = [f"Soak, {result['started_utc']} UTC, {args['minutes']} min at {args['rate']:,} trades/s, "
             f"{args['workers']} worker(s), {result['machine']}. Load average (1 min) at each row; "
             f"RSS MiB / CPU % per process (Prometheus for "
             f"{', '.join(n for n in names if samples[-1]['processes'][n]['source'] == 'prometheus')}; "
             f"/proc for {', '.join(n for n in names if samples[-1]['processes'][n]['source'] == '/proc')}).", "",
             "| min | load | feed/s | Silver rows | normalizer lag | ClickHouse lag | DLQ | "
             + " | ".join(names) + " |",
             "|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(names)]
    for s in samples:
        cells = []
        for name in names:
            p = s["processes"].get(name, {})
            rss = "-" if p.get("rss_mib") is None else f"{p['rss_mib']:.0f}"
            cpu = "-" if p.get("cpu_pct") is None else f"{p['cpu_pct']:.0f}%"
            cells.append(f"{rss} / {cpu}")
        tag = "" if s.get("phase") == "load" else " (drain)"
        lines.append(f"| {s['minute']:.1f}{tag} | {s['load1']:.1f} | {_n(s['feed_rate'])} | {s['silver_rows']:,} | "
                     f"{_n(s['normalizer_lag'])} | {_n(s['clickhouse_lag'])} | {s['dlq']:.0f} | "
                     + " | ".join(cells) + " |")
    lines += ["", f"Verdict (after {v['warm_up_minutes']:.0f} min warm-up): memory "
              f"{'flat' if v['memory_flat'] else 'NOT flat'}; lag {'bounded' if v['lag_bounded'] else 'NOT bounded'} "
              f"(max normalizer {_n(v['max_normalizer_lag'])}, max ClickHouse {_n(v['max_clickhouse_lag'])}, "
              f"bound {v['lag_bound']:,} = 10 s of trades). Silver: {result['silver_rows']:,} of "
              f"{result['expected_trades']:,} trades.", "",
              "| process | mean RSS MiB | max RSS MiB | slope MiB/min | fitted growth MiB | flat |",
              "|---|---:|---:|---:|---:|---|"]
    for name, m in v["memory"].items():
        if m["slope_mib_per_min"] is None:
            continue
        lines.append(f"| {name} | {m['mean_mib']:.0f} | {m['max_mib']:.0f} | {m['slope_mib_per_min']:+.2f} | "
                     f"{m['growth_mib']:+.1f} | {'yes' if m['flat'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long trades flow")
    parser.add_argument("--rate", type=int, default=2000, help="trades per second the simulator serves")
    parser.add_argument("--workers", type=int, default=1, help="normalizer workers")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between rows")
    parser.add_argument("--drop-every", type=int, default=0,
                        help="the simulator drops the feed's connection after every N trades (the feed reconnects "
                             "and backfills the gap over REST); 0: never")
    parser.add_argument("--capture-seconds", type=int, default=60,
                        help="length of the synthetic capture the simulator repeats")
    parser.add_argument("--drain", type=float, default=120.0, help="seconds to wait after the capture ends for Silver")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    parser.add_argument("--keep", action="store_true", help="leave the stack running at the end")
    parser.add_argument("--port-base", type=int, default=0,
                        help="worker metrics on this port (worker k: +10(k-1)), its web port +1, the feed's metrics "
                             "+100, the simulator +101; default: free ports (which an outgoing connection may take "
                             "before the process binds them)")
    args = parser.parse_args()

    settings = services.for_stack(get_settings())
    # The pipeline's processes on their own ports: several soaks, tests and stacks may share the machine.
    base = args.port_base
    ports = ({"worker_metrics_port": base, "worker_web_port": base + 1,  # worker k: +10(k-1) and +(k-1)
              "feed_metrics_port": base + 100, "simulator_port": base + 101} if base else
             {"worker_metrics_port": free_port(), "worker_web_port": free_port(), "feed_metrics_port": free_port(),
              "simulator_port": free_port()})
    settings = settings.model_copy(update=ports)
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    # A short capture the simulator replays `repeat` times (ids and times moved on each round): building
    # and loading one of the whole run (millions of trades) would take longer than the run here.
    capture_s = min(args.capture_seconds, int(args.minutes * 60) + 30)
    repeat = math.ceil((args.minutes * 60 + 30) / capture_s)
    seconds = capture_s * repeat
    print(f"building a capture of {args.rate * capture_s:,} trades ({capture_s} s at {args.rate}/s) in {work}, "
          f"served {repeat} times: {args.rate * seconds:,} trades in {seconds} s ...", flush=True)
    # Trade ids above any earlier run's (freshness's or a soak's): the feed resumes after the last id on
    # the raw topic and would skip lower ones, and Silver keeps every new one.
    first, last_of_capture = synthetic_binance(work / "capture.jsonl.gz", rate=args.rate, seconds=capture_s,
                                               first_id=fresh_first_id())
    last = first + (last_of_capture - first + 1) * repeat - 1
    started_utc = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    print(f"stack with Prometheus at {settings.prometheus_url}; data in {settings.home.resolve()}", flush=True)
    services.up(settings, services.stack_services(settings, with_prometheus=True))
    pipeline.prepare(settings)  # migrations and topics
    soak = Soak(settings, args, work, repeat)
    procs = soak.processes(work / "capture.jsonl.gz")
    slow = settings.model_copy(update={"stack_start_timeout_s": max(settings.stack_start_timeout_s, 300.0)})
    try:
        services.up(slow, procs, on_started=lambda svc, s: print(f"{svc.name} running ({s:.0f}s)", flush=True))
        began = time.monotonic()
        # Every process is a Prometheus target before the first row.
        deadline = time.monotonic() + 60
        while {m.get("service") for m, v in prom.query(soak.url, "up") if v == 1} < {p.name for p in procs}:
            if time.monotonic() > deadline:
                raise SystemExit(f"Prometheus does not scrape all of {[p.name for p in procs]}: "
                                 f"{prom.query(soak.url, 'up')}")
            time.sleep(1)
        total = last - first + 1
        end_of_load = began + seconds
        next_row = began + args.every
        drain_deadline = end_of_load + args.drain
        while True:
            time.sleep(max(0.0, next_row - time.monotonic()))
            next_row += args.every
            for svc in procs:
                pid = services.read_pid(settings, svc.name)
                if pid is None:
                    raise SystemExit(f"{svc.name} exited:\n{services.log_tail(settings, svc.name)}")
            row = soak.sample(began, first, last, procs)
            row["phase"] = "load" if time.monotonic() <= end_of_load else "drain"
            soak.samples.append(row)
            soak.print_row(row)
            if row["phase"] == "drain" and (row["silver_rows"] >= total or time.monotonic() > drain_deadline):
                break
        result = {"started_utc": started_utc, "args": {k: (str(v) if isinstance(v, Path) else v)
                                                        for k, v in vars(args).items()},
                  "machine": f"{os.cpu_count()} cores, {os.uname().nodename}",
                  "expected_trades": total, "silver_rows": soak.samples[-1]["silver_rows"],
                  "samples": soak.samples, "verdict": verdict(soak.samples, args)}
        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.out / f"soak-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M')}"
        stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
        text = markdown(result)
        stem.with_suffix(".md").write_text(text)
        print("\n" + text)
        print(f"saved {stem}.json and {stem}.md")
    finally:
        services.down(settings, procs)
        if not args.keep:
            services.down(settings)


if __name__ == "__main__":
    main()
