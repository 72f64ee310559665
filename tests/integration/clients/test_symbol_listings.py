"""What a feed may subscribe to, the normalizer accepts: both read the exchange's own listing
(here the simulator's metadata endpoints, in the real formats) over real HTTP, and the frames
go through the real broker, feed and worker processes."""

from __future__ import annotations

import asyncio
import gzip
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from streamapp import topics
from streamapp.clients import listings
from streamapp.clients.kafka import ensure_topics
from streamapp.normalize.symbols import DEFAULT_BINANCE_SYMBOLS, DEFAULT_KRAKEN_SYMBOLS
from streamapp.settings import Settings
from streamapp.simulator.capture import load as load_captures
from streamapp.simulator.server import RunningSimulator, Simulator
from tests.integration.kafkautil import end_offsets, read_from
from tests.integration.processes import Process, free_port

pytestmark = pytest.mark.integration

CAPTURES = Path(__file__).resolve().parents[3] / "streamapp" / "captures"
SPOT = CAPTURES / "binance_spot_btcusdt_trades_2024-08-08.jsonl.gz"
KRAKEN = CAPTURES / "kraken_v2_trades_converted_from_v1_2021-04.jsonl.gz"
NEW = "PENGUUSDT"  # listed by the (simulated) exchange, not in the bundled list
FRAMES = 300


def new_symbol_capture(path: Path) -> Path:
    """The spot capture's first trades, as if they were of a newly listed pair."""
    assert NEW not in DEFAULT_BINANCE_SYMBOLS
    with gzip.open(SPOT) as src, path.open("wb") as out:
        for _, line in zip(range(FRAMES), src):
            rec = orjson.loads(line)
            rec["frame"] = rec["frame"].replace("BTCUSDT", NEW).replace("btcusdt@trade", NEW.lower() + "@trade")
            out.write(orjson.dumps(rec) + b"\n")
    return path


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def simulator(tmp_path_factory):
    """`streamapp exchange serve` replaying the new pair's capture, as its own process."""
    tmp = tmp_path_factory.mktemp("listings")
    capture = new_symbol_capture(tmp / "new_pair.jsonl")
    port = free_port()
    proc = Process(["exchange", "serve", "--capture", str(capture), "--port", str(port), "--speed", "max"],
                   tmp / "simulator.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        yield f"127.0.0.1:{port}", proc
    finally:
        proc.stop()


def test_the_simulator_lists_its_captured_and_bundled_symbols_in_the_exchanges_formats(tmp_path):
    async def go():
        sim = Simulator(load_captures([SPOT, KRAKEN]))
        async with RunningSimulator(sim) as rs:
            settings = Settings(home=tmp_path, binance_symbols="", kraken_symbols="")
            return [await listings.load(settings, exchange, rest_url=rs.url(""))
                    for exchange in ("binance", "kraken", "binanceusdm")]

    binance, kraken, usdm = asyncio.run(go())
    assert {b.origin for b in (binance, kraken, usdm)} == {listings.EXCHANGE}
    assert set(binance.symbols.table) == set(DEFAULT_BINANCE_SYMBOLS) | {"BTCUSDT"}
    assert binance.listing.status["BTCUSDT"] == "TRADING"
    # The Kraken capture's v2 names (ALGO/BTC ...) are listed, under Kraken's wsname spelling too.
    assert {"ALGO/BTC", "ALGO/XBT", "BTC/USD", "XBT/USD", "DASH/EUR", "SC/EUR", "XMR/USD"} <= set(kraken.symbols.table)
    assert set(DEFAULT_KRAKEN_SYMBOLS) <= set(kraken.symbols.table)
    assert kraken.symbols.canonical("XDG/USD") == "DOGE/USD"
    assert usdm.symbols.exchange == "binanceusdm" and usdm.symbols.canonical("BTCUSDT") == "BTC/USDT"


def test_the_feed_refuses_at_start_a_symbol_the_exchange_does_not_list(simulator, tmp_path):
    address, _ = simulator
    feed = Process(["feed", "run", "--exchange", "binance", "--symbols", f"{NEW},NOPEUSDT",
                    "--url", f"ws://{address}/stream", "--rest-url", f"http://{address}", "--no-backfill",
                    "--no-create-topic", "--metrics-port", "0"], tmp_path / "feed.log")
    try:
        code = feed.proc.wait(60)
    finally:
        feed.stop()
    output = feed.output()
    assert code == 1, output[-2000:]
    assert f"binance does not list NOPEUSDT (checked against the exchange's list from http://{address}" in output


@pytest.mark.timeout(240)
def test_a_symbol_only_the_exchange_lists_reaches_the_normalized_topic_not_the_dlq(stack, simulator, tmp_path):
    settings = stack
    address, _ = simulator
    ensure_topics(settings, topics.PIPELINE_TOPICS)
    target = topics.normalized("binance")
    starts = {t: end_offsets(settings, t) for t in (target, topics.DLQ)}
    worker = Process(["worker"], tmp_path / "worker.log", env={
        "STREAMAPP_WORKER_WEB_PORT": str(free_port()), "STREAMAPP_WORKER_METRICS_PORT": str(free_port()),
        "STREAMAPP_BINANCE_REST_URL": f"http://{address}",
    })
    feed = Process(["feed", "run", "--exchange", "binance", "--symbols", NEW, "--url", f"ws://{address}/stream",
                    "--rest-url", f"http://{address}", "--no-backfill", "--metrics-port", "0"], tmp_path / "feed.log")
    try:
        deserialize = AvroDeserializer(SchemaRegistryClient(settings.schema_registry_config()))
        ours: list[dict] = []
        deadline = time.monotonic() + 180
        while len(ours) < FRAMES and time.monotonic() < deadline:
            assert feed.proc.poll() is None, feed.output()[-2000:]
            got = read_from(settings, target, starts[target], until=10**9, timeout_s=3)
            ours = [r for r in (deserialize(m.value(), SerializationContext(target, MessageField.VALUE)) for m in got)
                    if r["exchange_symbol"] == NEW]
        dlq = read_from(settings, topics.DLQ, starts[topics.DLQ], until=10**9, timeout_s=3)
    finally:
        feed.stop()
        worker.stop()
    assert len({r["trade_id"] for r in ours}) == FRAMES, (worker.output()[-3000:], feed.output()[-2000:])
    assert {r["symbol"] for r in ours} == {"PENGU/USDT"}
    assert [m for m in dlq if m.key() == NEW.encode()] == []
    assert "accepting" in worker.output() and f"from the exchange's list from http://{address}" in worker.output()
