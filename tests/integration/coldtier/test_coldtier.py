"""The Iceberg cold tier on the local stack: offload, verify, idempotency, maintenance, cold reads.

Trades of symbols new to each run go the real way: Avro records on the normalized topics,
consumed by ClickHouse's Kafka engines into Bronze, Silver and Gold (a few delivered twice, as
Kafka redeliveries are). Raw records with timestamps three hours ago go to the raw topics.
Each test module uses a private catalog and warehouse under pytest's tmp dir.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka import Producer

from records import Trade
from streamapp import topics
from streamapp.clients.clickhouse import connect
from streamapp.clients.kafka import ensure_topics
from streamapp.clients.registry import register_trade_schema
from streamapp.codecs.avro import TradeAvroCodec
from streamapp.coldtier import catalog, schemas
from streamapp.exchanges import BINANCE, KRAKEN
from streamapp.settings import Settings
from tests.cli import invoke

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

RUN = uuid.uuid4().hex[:6].upper()
SYMBOLS = {BINANCE: f"IC{RUN}/USDT", KRAKEN: f"IK{RUN}/USD"}
# Three hours of 2024 trades (the captures' era: far older than the hot tier's retention window
# counted from trade time, yet kept, since the TTL counts from ingest time).
T0 = datetime(2024, 3, 5, 10, 0, tzinfo=timezone.utc) + timedelta(days=int(RUN, 16) % 300)
HOURS = 3
PER_HOUR = 40
START, END = T0, T0 + timedelta(hours=HOURS)


def _trades(exchange: str) -> list[Trade]:
    symbol = SYMBOLS[exchange]
    trades = []
    for i in range(HOURS * PER_HOUR):
        t = T0 + timedelta(seconds=i * 3600 // PER_HOUR + 7)
        us = int(t.timestamp() * 1_000_000)
        trades.append(Trade(exchange, symbol, symbol.replace("/", ""), str(10_000 + i), 10_000 + i,
                            Decimal("100.25") + Decimal(i) / 100, Decimal("0.001") * (i % 7 + 1),
                            "buy" if i % 3 else "sell", us, us, us + 1000, 0, i))
    return trades


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    return {"STREAMAPP_ICEBERG_CATALOG_URI": f"sqlite:///{tmp / 'catalog.db'}",
            "STREAMAPP_ICEBERG_WAREHOUSE": (tmp / "warehouse").as_uri(),
            "STREAMAPP_ICEBERG_OFFLOAD_GRACE_S": "0", "STREAMAPP_ICEBERG_ORPHAN_MIN_AGE_S": "0",
            "STREAMAPP_ICEBERG_SNAPSHOT_MAX_AGE_H": "0.0001"} | extra


def _settings(stack: Settings, env: dict[str, str]) -> Settings:
    del stack  # the stack's settings come from the environment; ``env`` adds the cold tier's
    return Settings(**{k.removeprefix("STREAMAPP_").lower(): v for k, v in env.items()})


@pytest.fixture(scope="module")
def loaded(migrated, tmp_path_factory):
    """The trades in ClickHouse (via Kafka), raw records on the raw topics; a private catalog's env."""
    stack = migrated
    ensure_topics(stack, topics.PIPELINE_TOPICS)
    producer = Producer(stack.kafka_client_config() | {"linger.ms": 5})
    expected = 0
    for exchange in (BINANCE, KRAKEN):
        topic = topics.normalized(exchange)
        codec = TradeAvroCodec(asyncio.run(register_trade_schema(stack, topic)))
        trades = _trades(exchange)
        for trade in trades + trades[:5]:  # five redeliveries: Bronze keeps them, Silver and Gold must not
            producer.produce(topic, codec.encode(trade), key=trade.symbol.encode())
        expected += len(trades)
    raw_ts = int((datetime.now(timezone.utc) - timedelta(hours=3)).timestamp() * 1000)
    for i in range(10):
        producer.produce(topics.raw(BINANCE), json.dumps({"run": RUN, "i": i}).encode(), key=b"ICRAW",
                         timestamp=raw_ts + i, headers=[("streamapp.source", b"test")])
    assert producer.flush(30) == 0
    client = connect(stack)
    deadline = time.monotonic() + 120
    symbols = tuple(SYMBOLS.values())
    while True:
        silver = client.command(f"SELECT count() FROM silver_trades WHERE symbol IN {symbols}")
        bronze = sum(client.command(f"SELECT count() FROM bronze_trades_{e} WHERE symbol IN {symbols}")
                     for e in (BINANCE, KRAKEN))
        if silver == expected and bronze == expected + 10:
            break
        assert time.monotonic() < deadline, f"ClickHouse has {silver}/{expected} Silver, {bronze} Bronze rows"
        time.sleep(1)
    tmp = tmp_path_factory.mktemp("iceberg")
    return _env(tmp)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def ok(*args: str, env: dict[str, str]) -> str:
    result = invoke(*args, env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def _files(env: dict[str, str]) -> list[Path]:
    root = Path(env["STREAMAPP_ICEBERG_WAREHOUSE"].removeprefix("file://"))
    return sorted(p for p in root.rglob("*") if p.is_file())


def _digest(stack: Settings, env: dict[str, str]) -> dict[str, str]:
    """Per table: a digest of every row, sorted (what maintenance must leave identical)."""
    settings = _settings(stack, env)
    cat = catalog.open_catalog(settings)
    digests = {}
    for spec in schemas.cold_tables():
        table = catalog.load(cat, settings, spec.name)
        if table is None:
            continue
        rows = sorted(json.dumps(r, sort_keys=True, default=str) for r in table.scan().to_arrow().to_pylist())
        digests[spec.name] = hashlib.sha256("\n".join(rows).encode()).hexdigest() + f":{len(rows)}"
    return digests


RANGE = ("--from", START.isoformat(), "--to", END.isoformat())


def _raw_range() -> tuple[str, ...]:
    hour = (datetime.now(timezone.utc) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    return "--from", hour.isoformat(), "--to", (hour + timedelta(hours=1)).isoformat()


@pytest.fixture(scope="module")
def offloaded(loaded, migrated):
    """This module's hours offloaded (the shared hot tier may hold many more: --from/--to keep the tests small)."""
    out = ok("offload", "--no-raw", *RANGE, env=loaded)
    assert "trades" in out
    out = ok("offload", *_raw_range(), env=loaded)
    assert "raw" in out
    return loaded


def test_offload_then_verify_passes(offloaded):
    out = ok("verify", "warm-cold", "--from", START.isoformat(), "--to", END.isoformat(), env=offloaded)
    assert "hot and cold agree" in out


def test_iceberg_rows_equal_clickhouse_rows(offloaded, migrated):
    settings = _settings(migrated, offloaded)
    cat = catalog.open_catalog(settings)
    client = connect(migrated)
    symbols = tuple(SYMBOLS.values())
    from streamapp.coldtier.offload import utc

    def norm(row) -> tuple:
        return tuple(utc(v) if isinstance(v, datetime) else v for v in row)

    for spec, sql in ((schemas.SILVER, "SELECT {c} FROM silver_trades FINAL WHERE symbol IN {s}"),
                      (schemas.bronze(BINANCE), "SELECT {c} FROM bronze_trades_binance WHERE symbol IN {s}"),
                      (schemas.gold("5m"), "SELECT {c} FROM gold_ohlcv_5m_final WHERE symbol IN {s}")):
        table = cat.load_table(catalog.identifier(settings, spec))
        columns = table.schema().column_names
        hot = sorted(norm(r) for r in client.query(sql.format(c=", ".join(columns), s=symbols)).result_rows)
        cold = sorted(norm(r[c] for c in columns) for r in table.scan().to_arrow().to_pylist()
                      if r["symbol"] in symbols)
        assert cold == hot and cold, spec  # every column of every row, decimals and µs exact
    table = cat.load_table(catalog.identifier(settings, schemas.SILVER))
    assert len([r for r in table.scan().to_arrow().to_pylist() if r["symbol"] in symbols]) == 2 * HOURS * PER_HOUR
    # the commit that wrote them names its hours in the snapshot's properties
    recorded = [set(s.summary.get("streamapp.offload.hour", "").split(",")) for s in table.snapshots()]
    assert any({(T0 + timedelta(hours=h)).isoformat() for h in range(HOURS)} <= hours for hours in recorded)
    bronze = cat.load_table(catalog.identifier(settings, schemas.bronze(BINANCE)))
    rows = [r for r in bronze.scan().to_arrow().to_pylist() if r["symbol"] == SYMBOLS[BINANCE]]
    assert len(rows) == HOURS * PER_HOUR + 5  # the redeliveries, each with its own Kafka offset
    assert all(r["_topic"] == topics.normalized(BINANCE) and r["_offset"] >= 0 for r in rows)
    raw = cat.load_table(catalog.identifier(settings, schemas.RAW))
    mine = [r for r in raw.scan().to_arrow().to_pylist() if r["key"] == b"ICRAW" and RUN.encode() in r["value"]]
    assert len(mine) == 10 and mine[0]["headers"] == [{"key": "streamapp.source", "value": b"test"}]


def test_second_offload_changes_no_row_and_no_file(offloaded, migrated):
    before_files, before_rows = _files(offloaded), _digest(migrated, offloaded)
    out = ok("offload", "--no-raw", *RANGE, env=offloaded)
    ok("offload", *_raw_range(), env=offloaded)
    assert _files(offloaded) == before_files
    assert _digest(migrated, offloaded) == before_rows
    assert "trades" in out


def test_verify_catches_a_missing_hour_and_an_altered_row(offloaded, migrated, tmp_path):
    from pyiceberg.expressions import EqualTo

    from streamapp.coldtier.offload import hour_filter

    # A catalog of its own, offloaded afresh: the other tests keep the good one.
    env = _env(tmp_path)
    ok("offload", "--no-raw", *RANGE, env=env)
    ok("verify", "warm-cold", "--from", START.isoformat(), "--to", END.isoformat(), env=env)
    settings = _settings(migrated, env)
    cat = catalog.open_catalog(settings)
    silver = cat.load_table(catalog.identifier(settings, schemas.SILVER))
    # a missing hour: the middle hour of binance's symbol disappears from Silver
    silver.delete(hour_filter("trade_time", T0 + timedelta(hours=1), T0 + timedelta(hours=2)))
    # an altered row: one gold candle's close changes
    gold = cat.load_table(catalog.identifier(settings, schemas.gold("1h")))
    rows = gold.scan(row_filter=EqualTo("symbol", SYMBOLS[KRAKEN])).to_arrow()
    first = rows.slice(0, 1).to_pylist()[0]
    changed = rows.to_pylist()
    changed[0] = first | {"close": first["close"] + Decimal("0.01")}
    import pyarrow as pa

    gold.overwrite(pa.Table.from_pylist(changed, schema=gold.schema().as_arrow()),
                   overwrite_filter=EqualTo("symbol", SYMBOLS[KRAKEN]))
    result = invoke("verify", "warm-cold", "--from", START.isoformat(), "--to", END.isoformat(), env=env)
    assert result.exit_code == 1, result.output
    lines = [line.replace("│", " ").split() for line in result.output.splitlines()]
    assert ["silver_trades", BINANCE, SYMBOLS[BINANCE], _iso(T0 + timedelta(hours=1)), "missing", "in", "cold",
            str(PER_HOUR), "None"] in lines, result.output
    altered = [line for line in lines if line[:3] == ["gold_ohlcv_1h", KRAKEN, SYMBOLS[KRAKEN]]]
    assert len(altered) == 1 and altered[0][4] == "close", result.output
    assert Decimal(altered[0][6]) - Decimal(altered[0][5]) == Decimal("0.01")


def test_cold_candles_equal_hot_candles(offloaded):
    for exchange, symbol in SYMBOLS.items():
        for interval in ("1m", "1h"):
            args = ["tables", "candles", "--exchange", exchange, "--symbol", symbol, "--interval", interval,
                    "--since", START.isoformat(), "--until", END.isoformat(), "--last", "1000", "--format", "json"]
            hot = json.loads(ok(*args, "--tier", "hot", env=offloaded))
            cold = json.loads(ok(*args, "--tier", "cold", env=offloaded))
            assert cold == hot and len(hot) == (HOURS * PER_HOUR if interval == "1m" else HOURS)


def test_auto_reads_the_cold_tier_for_what_the_hot_tier_no_longer_holds(offloaded, migrated):
    import pyarrow as pa

    # A symbol only the cold tier knows (its hot rows long deleted): a 2019 candle written into Iceberg.
    settings = _settings(migrated, offloaded)
    gold = catalog.open_catalog(settings).load_table(catalog.identifier(settings, schemas.gold("1m")))
    t = datetime(2019, 6, 1, 12, 0, tzinfo=timezone.utc)
    symbol = f"OLD{RUN}/USDT"
    row = {"exchange": BINANCE, "symbol": symbol, "window_start": t, "open": Decimal("1"), "high": Decimal("2"),
           "low": Decimal("0.5"), "close": Decimal("1.5"), "volume": Decimal("3"), "quote_volume": Decimal("4.5"),
           "trade_count": 2, "taker_buy_volume": Decimal("1"), "taker_buy_quote_volume": Decimal("1.5"),
           "first_trade_time": t, "last_trade_time": t + timedelta(seconds=30)}
    gold.append(pa.Table.from_pylist([row], schema=gold.schema().as_arrow()))
    args = ["tables", "candles", "--exchange", BINANCE, "--symbol", symbol, "--format", "json"]
    assert json.loads(ok(*args, env=offloaded)) == [
        {"window_start": "2019-06-01T12:00:00Z", "open": "1", "high": "2", "low": "0.5", "close": "1.5",
         "volume": "3", "quote_volume": "4.5", "trade_count": 2}]
    result = invoke(*args, "--tier", "hot", env=offloaded)
    assert result.exit_code == 1 and "no 1m candles" in result.output
    tail = json.loads(ok("tables", "tail", schemas.bronze(BINANCE), "--tier", "cold", "-n", "3", "--format", "json",
                         env=offloaded))
    assert len(tail) == 3 and [r["ingest_time"] for r in tail] == sorted(r["ingest_time"] for r in tail)


def test_status_shows_the_offload_state_and_warns_before_the_ttl_deletes_an_hour(offloaded, tmp_path):
    report = json.loads(invoke("status", "--format", "json", env=offloaded).output)["cold_tier"]
    assert report["hours_offloaded"] >= HOURS and report["lag_s"] is not None and report["at_risk"] == []
    # Nothing offloaded into a fresh catalog, and a one-day TTL: every hour is deleted within the day.
    fresh = _env(tmp_path) | {"STREAMAPP_HOT_RETENTION_DAYS": "1"}
    result = invoke("status", env=fresh)
    text = " ".join(result.output.split())
    assert "0 hours offloaded" in text and f"hour {T0.isoformat()} is not offloaded" in text, result.output
    assert "run `streamapp offload`" in text


def test_maintenance_reduces_files_and_keeps_every_row(offloaded, migrated):
    from streamapp.coldtier import maintain, offload

    # Last in this module: it drops the offload log. Offload the same hours again, hour by hour as hourly runs do (the log dropped, so all are
    # due): each day partition now holds a file per hour, and older snapshots hold the rest.
    before_rows = _digest(migrated, offloaded)
    settings = _settings(migrated, offloaded)
    cat = catalog.open_catalog(settings)
    cat.drop_table(catalog.identifier(settings, schemas.OFFLOAD_LOG))
    summary = offload.run(settings, raw=False, batch=False, since=START, until=END)
    assert len(summary.written) == HOURS and all(len(w.hours) == 1 for w in summary.written)
    assert _digest(migrated, offloaded) == before_rows  # re-offloading an hour neither duplicates nor loses
    silver = cat.load_table(catalog.identifier(settings, schemas.SILVER))
    day = T0.date()
    mine = [f for f in silver.inspect.files().select(["partition"]).to_pylist()
            if f["partition"]["trade_time_day"] == day]
    assert len(mine) >= HOURS  # one per offloaded hour of that day and exchange
    before_files = len(_files(offloaded))
    time.sleep(1)  # snapshots older than the (tiny) max age
    report = maintain.run(settings)
    after_files = len(_files(offloaded))
    assert after_files < before_files
    by_table = {t.table: t for t in report.tables}
    assert by_table[schemas.SILVER].data_files_after < by_table[schemas.SILVER].data_files_before
    assert by_table[schemas.SILVER].partitions_compacted >= 2 and by_table[schemas.SILVER].snapshots_expired > 0
    silver = cat.load_table(catalog.identifier(settings, schemas.SILVER))
    assert len([f for f in silver.inspect.files().select(["partition"]).to_pylist()
                if f["partition"]["trade_time_day"] == day]) == 2  # one per exchange
    assert _digest(migrated, offloaded) == before_rows
    ok("verify", "warm-cold", "--from", START.isoformat(), "--to", END.isoformat(), env=offloaded)
    out = ok("iceberg", "maintain", env=offloaded)  # the CLI, with nothing left to compact
    assert "silver_trades" in out and "files deleted" in out
