"""Simulator HTTP side (control, metrics, REST history), recording, proactive rotation, CLI help."""

from __future__ import annotations

import asyncio
import gzip

import aiohttp
import orjson
import pytest
from click.testing import CliRunner

from streamapp.cli import cli
from streamapp.feeds.handler import FeedOptions
from streamapp.feeds.record import record
from streamapp.simulator.capture import load
from streamapp.simulator.server import RunningSimulator, Simulator
from tests.integration.feeds.test_feed_simulator import SPOT, by_key, capture_frames, consume, new_topic, run_feed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_control_metrics_and_rest():
    async def go():
        sim = Simulator(load([SPOT]))
        async with RunningSimulator(sim) as rs, aiohttp.ClientSession() as http:
            async with http.post(rs.url("/control/skip?arg=5")) as r:
                assert r.status == 200 and list(sim.faults.pending) == [("skip", 5.0)]
            async with http.post(rs.url("/control/explode")) as r:
                assert r.status == 400
            async with http.get(rs.url("/api/v3/historicalTrades?symbol=BTCUSDT&fromId=3735684135&limit=2")) as r:
                rows = orjson.loads(await r.read())
            assert [row["id"] for row in rows] == [3735684135, 3735684136]
            async with http.get(rs.url("/metrics")) as r:
                assert "streamapp_simulator_connections" in await r.text()
    asyncio.run(go())


def test_record_writes_gzip_capture_lines(tmp_path):
    async def go():
        sim = Simulator(load([SPOT]))
        async with RunningSimulator(sim) as rs:
            stop = asyncio.Event()
            task = asyncio.create_task(record(FeedOptions("binance", ["BTCUSDT"], url=rs.ws_url("/stream")),
                                              tmp_path, stop, rotate_bytes=200_000))
            while sim.head.get(("binance", "btcusdt@trade"), 0) < 4335:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            stop.set()
            return await task
    writer = asyncio.run(go())
    assert len(writer.files) >= 3  # rotated
    lines = [orjson.loads(line) for f in sorted(writer.files) for line in gzip.open(f)]
    frames = [rec["frame"].encode() for rec in lines if rec["frame"].startswith('{"stream"')]
    assert frames == capture_frames(SPOT)
    assert lines[0]["exchange"] == "binance" and lines[0]["receive_time_us"] > 0


def test_proactive_rotation_with_overlap_loses_and_duplicates_nothing(stack):
    settings = stack
    frames = capture_frames(SPOT)
    topic = new_topic(settings, "binance")
    handler = asyncio.run(run_feed(settings, Simulator(load([SPOT]), speed=20), "binance", ["BTCUSDT"], topic,
                                   max_connection_age_s=1.0, overlap_s=2.0,
                                   until=lambda h: h.publisher.delivered >= len(frames), timeout_s=40))
    assert handler.runner.reconnects >= 3 and handler.sink.gaps == []
    assert by_key(consume(settings, topic, len(frames))) == {b"BTCUSDT": frames}


def test_cli_help():
    runner = CliRunner()
    for args in (["feed", "run", "--help"], ["feed", "record", "--help"], ["exchange", "serve", "--help"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0 and "--symbols" in result.output or "--capture" in result.output
    result = runner.invoke(cli, ["exchange", "serve", "--capture", "nope.jsonl.gz"])
    assert result.exit_code == 1 and "does not exist" in result.output
