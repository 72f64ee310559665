"""Compaction against a concurrent commit, on a real SQLite catalog in a temp dir (no network)."""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa

from streamapp.coldtier import catalog, schemas
from streamapp.coldtier.maintain import compact_partition, small_partitions
from streamapp.settings import Settings

T0 = datetime(2024, 1, 1, 5, tzinfo=timezone.utc)


def _rows(table, start: int, n: int) -> pa.Table:
    rows = []
    for i in range(start, start + n):
        t = T0 + timedelta(minutes=i)
        rows.append({"exchange": "binance", "symbol": "BTC/USDT", "exchange_symbol": "BTCUSDT", "trade_id": str(i),
                     "trade_seq": i, "price": Decimal("100.5"), "quantity": Decimal("0.001"), "side": "buy",
                     "trade_time": t, "event_time": t, "receive_time": t, "ingest_time": t})
    return pa.Table.from_pylist(rows, schema=table.schema().as_arrow())


class _CommitsOnFirstLoad:
    """The real catalog; right after the first ``load_table`` another writer appends to the same partition,
    so the table just loaded is stale when its commit comes (what an offload running meanwhile does)."""

    def __init__(self, real, extra):
        self.real, self.extra, self.loads = real, extra, 0

    def load_table(self, identifier):
        table = self.real.load_table(identifier)
        self.loads += 1
        if self.loads == 1:
            self.real.load_table(identifier).append(self.extra(table))
        return table


def test_compaction_loses_no_row_to_a_concurrent_commit(tmp_path):
    settings = Settings(iceberg_catalog_uri=f"sqlite:///{tmp_path / 'c.db'}",
                        iceberg_warehouse=(tmp_path / "wh").as_uri())
    cat = catalog.open_catalog(settings)
    spec = schemas.by_name(schemas.SILVER)
    table = catalog.ensure_table(cat, settings, spec)
    for start in (0, 10, 20):  # three small files in one (day, exchange) partition
        table.append(_rows(table, start, 10))
    assert small_partitions(table, spec, T0.date()) == [(T0.date(), "binance")]
    racing = _CommitsOnFirstLoad(cat, lambda t: _rows(t, 30, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows, retries = compact_partition(racing, settings, spec.name, spec, (T0.date(), "binance"))
    assert retries == 1 and racing.loads == 2  # the first commit was refused, the partition read again
    table = cat.load_table(catalog.identifier(settings, spec.name))
    ids = sorted(int(i) for i in table.scan().to_arrow().column("trade_id").to_pylist())
    assert ids == list(range(35)) and rows == 35
    assert len(table.inspect.files()) == 1
