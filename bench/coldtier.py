"""Benchmark: offload and maintenance of the Iceberg cold tier for one million trades.

Inserts N synthetic trades (fresh symbols each run, spread over the 24 hours of one day) into
``bronze_trades_binance`` of a running local stack, so ClickHouse's views build Silver and Gold
from them as from Kafka, then times, into a private catalog and warehouse under a temp dir:

- a catch-up ``offload`` of every due hour (a day's hours in one commit per table),
- a second ``offload`` (nothing due: no commit, no file),
- into a fresh catalog, an hour-by-hour ``offload`` (one commit per hour and table, as hourly
  runs write), then ``iceberg maintain`` (compaction, expiry, unreferenced files),

and counts data files and files stored. The hot tier may hold other hours too (tests'
trades); they are offloaded alongside and counted in the figures.

    python bench/coldtier.py --trades 1000000
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamapp import tables  # noqa: E402
from streamapp.clients.clickhouse import connect  # noqa: E402
from streamapp.settings import get_settings  # noqa: E402

COLUMNS = ["exchange", "symbol", "exchange_symbol", "trade_id", "trade_seq", "price", "quantity", "side",
           "trade_time", "event_time", "receive_time", "raw_partition", "raw_offset", "_topic", "_partition",
           "_offset", "_timestamp", "ingest_time"]


def insert_trades(n: int, day: datetime, symbols: list[str], chunk: int = 100_000) -> float:
    client = connect(get_settings(), send_receive_timeout=600)
    rng = random.Random(n)
    began = time.monotonic()
    step_us = 86_400_000_000 // n
    for first in range(0, n, chunk):
        rows = []
        now = datetime.now(timezone.utc)
        for i in range(first, min(n, first + chunk)):
            t = day + timedelta(microseconds=i * step_us)
            symbol = symbols[i % len(symbols)]
            rows.append(("binance", symbol, symbol.replace("/", ""), str(i), i,
                         Decimal(rng.randint(1_000_000, 9_000_000)) / 100, Decimal(rng.randint(1, 100_000)) / 100_000,
                         "buy" if i % 2 else "sell", t, t, t, 0, i, "bench", 0, i, None, now))
        client.insert(tables.bronze("binance"), rows, column_names=COLUMNS)
        print(f"  inserted {min(n, first + chunk):,} trades", flush=True)
    return time.monotonic() - began


def files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=1_000_000, help="0: use what the hot tier holds")
    parser.add_argument("--symbols", type=int, default=10)
    args = parser.parse_args()

    if args.trades:
        run = uuid.uuid4().hex[:5].upper()
        day = datetime(2023, 1, 1, tzinfo=timezone.utc) + timedelta(days=int(run, 16) % 365)
        symbols = [f"B{run}{i}/USDT" for i in range(args.symbols)]
        print(f"inserting {args.trades:,} trades of {day:%Y-%m-%d} into ClickHouse ...")
        inserted_s = insert_trades(args.trades, day, symbols)
        print(f"inserted in {inserted_s:.1f} s")

    from streamapp.coldtier import catalog, schemas
    from streamapp.coldtier import maintain as maintenance
    from streamapp.coldtier import offload

    def fresh_catalog() -> Path:
        tmp = Path(tempfile.mkdtemp(prefix="coldtier-bench-"))
        os.environ.update({"STREAMAPP_ICEBERG_CATALOG_URI": f"sqlite:///{tmp / 'catalog.db'}",
                           "STREAMAPP_ICEBERG_WAREHOUSE": (tmp / "warehouse").as_uri(),
                           "STREAMAPP_ICEBERG_OFFLOAD_GRACE_S": "0", "STREAMAPP_ICEBERG_ORPHAN_MIN_AGE_S": "0",
                           "STREAMAPP_ICEBERG_SNAPSHOT_MAX_AGE_H": "0.0001"})
        get_settings.cache_clear()
        return tmp

    def hours(summary) -> int:
        return sum(len(w.hours) for w in summary.written)

    # 1. catch-up: every due hour at once (consecutive hours of a day in one commit per table)
    tmp = fresh_catalog()
    settings = get_settings()
    first = offload.run(settings, raw=False)
    rows = sum(sum(w.rows.values()) for w in first.written)
    print(f"catch-up offload: {hours(first)} hours, {rows:,} rows in {first.seconds:.1f} s; "
          f"files stored {files(tmp / 'warehouse')}")
    cat = catalog.open_catalog(settings)
    silver = cat.load_table(catalog.identifier(settings, schemas.SILVER))
    print(f"  silver_trades: {len(silver.inspect.files())} data files, "
          f"{sum(silver.inspect.files().column('file_size_in_bytes').to_pylist()) / 2**20:.1f} MiB")
    again = offload.run(settings, raw=False)
    print(f"second offload: {hours(again)} hours in {again.seconds:.1f} s; files stored {files(tmp / 'warehouse')}")

    # 2. hourly operation: one commit per hour and table, as `offload --every 1h` writes them
    tmp = fresh_catalog()
    settings = get_settings()
    hourly = offload.run(settings, raw=False, batch=False)
    print(f"hour-by-hour offload: {hours(hourly)} hours in {hourly.seconds:.1f} s "
          f"({hourly.seconds / max(1, hours(hourly)):.2f} s per hour); files stored {files(tmp / 'warehouse')}")
    cat = catalog.open_catalog(settings)
    time.sleep(1)
    before = files(tmp / "warehouse")
    report = maintenance.run(settings)
    print(f"maintain: {report.seconds:.1f} s; files stored {before} -> {files(tmp / 'warehouse')}")
    for t in report.tables:
        print(f"  {t.table}: data files {t.data_files_before} -> {t.data_files_after}, "
              f"stored {t.files_on_storage_before} -> {t.files_on_storage_after}, rows {t.rows:,}")
    began = time.monotonic()
    n = cat.load_table(catalog.identifier(settings, schemas.SILVER)).scan().to_arrow().num_rows
    print(f"full read of silver_trades: {n:,} rows in {time.monotonic() - began:.2f} s")


if __name__ == "__main__":
    main()
