"""`streamapp replay` on the real broker: exact copies, filters, ranges, pace, captures, refusals."""

from __future__ import annotations

import dataclasses
import gzip
import time
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from streamapp import headers as raw_headers
from streamapp import topics
from streamapp.clients.kafka import ensure_topics
from streamapp.codecs.avro import TradeAvroCodec
from streamapp.dispatch import Dispatcher
from streamapp.normalize import binance, kraken
from streamapp.normalize.symbols import SymbolMap
from streamapp.settings import get_settings
from tests.integration.kafkautil import end_offsets, read_from
from tests.integration.processes import free_port
from tests.cli import invoke

pytestmark = pytest.mark.integration

CAPTURES = Path(__file__).resolve().parents[3] / "streamapp" / "captures"
BINANCE_CAPTURE = CAPTURES / "binance_spot_btcusdt_trades_2024-08-08.jsonl.gz"
KRAKEN_CAPTURE = CAPTURES / "kraken_v2_trades_converted_from_v1_2021-04.jsonl.gz"
T0 = 1723161300000  # 2024-08-08T23:55:00Z
KEYS = [b"BTCUSDT", b"ETHUSDT", b"SOLUSDT", None]


def new_topic(settings, partitions: int = 3) -> str:
    name = f"test.replay.{uuid.uuid4().hex[:12]}"
    ensure_topics(settings, [name], partitions=partitions)
    return name


def fill(settings, topic: str, count: int, *, step_ms: int = 1000, partitions: int = 3) -> list[dict]:
    """``count`` records spread over the partitions, one ``step_ms`` apart; return them as written."""
    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True, "linger.ms": 5})
    written = []
    for i in range(count):
        rec = {"partition": i % partitions, "key": KEYS[i % len(KEYS)], "value": f"v{i}".encode() * (1 + i % 5),
               "headers": [] if i % 7 == 3 else [("h", str(i).encode()), ("h", b"twice"), ("empty", b"")],
               "timestamp": T0 + i * step_ms}
        producer.produce(topic, rec["value"], rec["key"], partition=rec["partition"], timestamp=rec["timestamp"],
                         headers=rec["headers"] or None)
        written.append(rec)
    assert producer.flush(30) == 0
    return written


def read_all(settings, topic: str, expected: int | None = None) -> list:
    ends = end_offsets(settings, topic)
    want = expected if expected is not None else sum(ends.values())
    return read_from(settings, topic, {p: 0 for p in ends}, until=want, timeout_s=10 + want / 1000)


def as_rows(messages) -> dict[int, list[tuple]]:
    """Per partition, in order: (key, value, headers, timestamp)."""
    rows: dict[int, list[tuple]] = {}
    for m in messages:
        rows.setdefault(m.partition(), []).append((m.key(), m.value(), m.headers() or [], m.timestamp()[1]))
    return rows


def expected_rows(written: list[dict]) -> dict[int, list[tuple]]:
    rows: dict[int, list[tuple]] = {}
    for r in written:
        rows.setdefault(r["partition"], []).append((r["key"], r["value"], r["headers"], r["timestamp"]))
    return rows


def replay(*args: str, env: dict | None = None):
    return invoke("replay", *args, env=env)


def test_a_copy_keeps_keys_values_headers_timestamps_and_partition_order(stack):
    source, target = new_topic(stack), new_topic(stack)
    written = fill(stack, source, 90)
    result = replay("--from-topic", source, "--to-topic", target)
    assert result.exit_code == 0, result.output
    assert "replayed 90 records" in result.stdout and "records/s" in result.stdout
    assert as_rows(read_all(stack, target, 90)) == expected_rows(written)


def test_create_makes_the_target_with_the_sources_partitions(stack):
    source, target = new_topic(stack, partitions=2), f"test.replay.{uuid.uuid4().hex[:12]}"
    written = fill(stack, source, 10, partitions=2)
    missing = replay("--from-topic", source, "--to-topic", target)
    assert missing.exit_code == 1 and f"target topic {target} does not exist" in missing.output
    result = replay("--from-topic", source, "--to-topic", target, "--create")
    assert result.exit_code == 0, result.output
    assert set(end_offsets(stack, target)) == {0, 1}
    assert as_rows(read_all(stack, target, 10)) == expected_rows(written)


def test_symbols_filter_by_record_key(stack):
    source, target = new_topic(stack), new_topic(stack)
    written = fill(stack, source, 40)
    result = replay("--from-topic", source, "--to-topic", target, "--symbols", "BTCUSDT,SOLUSDT")
    assert result.exit_code == 0, result.output
    kept = [r for r in written if r["key"] in (b"BTCUSDT", b"SOLUSDT")]
    assert f"replayed {len(kept)} records" in result.stdout
    assert f"{40 - len(kept)} skipped" in result.stdout
    assert as_rows(read_all(stack, target, len(kept))) == expected_rows(kept)


@pytest.mark.parametrize(("since", "until"), [
    ("2024-08-08T23:55:10Z", "2024-08-08T23:55:25Z"),
    (str(T0 + 10_000), str(T0 + 25_000)),
    ("2024-08-09T01:55:10+02:00", None),
    (None, "2024-08-08T23:55:25"),
])
def test_a_time_range_is_since_inclusive_until_exclusive(stack, since, until):
    source, target = new_topic(stack), new_topic(stack)
    written = fill(stack, source, 40)
    args = ["--from-topic", source, "--to-topic", target]
    args += ["--since", since] if since else []
    args += ["--until", until] if until else []
    result = replay(*args)
    assert result.exit_code == 0, result.output
    lo = T0 + 10_000 if since else 0
    hi = T0 + 25_000 if until else 1 << 62
    kept = [r for r in written if lo <= r["timestamp"] < hi]
    assert f"replayed {len(kept)} records" in result.stdout
    assert as_rows(read_all(stack, target, len(kept))) == expected_rows(kept)


def test_an_offset_range_for_every_partition_or_per_partition(stack):
    source = new_topic(stack)
    written = fill(stack, source, 30)  # 10 per partition
    by_partition = expected_rows(written)

    target = new_topic(stack)
    result = replay("--from-topic", source, "--to-topic", target, "--start-offset", "2", "--end-offset", "5")
    assert result.exit_code == 0, result.output
    assert as_rows(read_all(stack, target, 9)) == {p: rows[2:5] for p, rows in by_partition.items()}

    target = new_topic(stack)
    result = replay("--from-topic", source, "--to-topic", target, "--start-offset", "1:7")
    assert result.exit_code == 0, result.output
    assert as_rows(read_all(stack, target, 3)) == {1: by_partition[1][7:]}

    target = new_topic(stack)
    result = replay("--from-topic", source, "--to-topic", target, "--start-offset", "0:1,2:8", "--end-offset", "0:3")
    assert result.exit_code == 0, result.output
    assert as_rows(read_all(stack, target, 4)) == {0: by_partition[0][1:3], 2: by_partition[2][8:]}


def test_speed_n_takes_about_the_span_over_n(stack):
    source, target = new_topic(stack), new_topic(stack)
    fill(stack, source, 21, step_ms=200)  # timestamps span 4 s
    started = time.monotonic()
    result = replay("--from-topic", source, "--to-topic", target, "--speed", "2")
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert 1.0 <= elapsed < 10, elapsed  # span / N = 2 s

    target = new_topic(stack)
    started = time.monotonic()
    assert replay("--from-topic", source, "--to-topic", target).exit_code == 0
    assert time.monotonic() - started < 2.0  # max: no pacing


def capture_lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines() if line.strip()]


def test_capture_frames_become_raw_records_of_their_exchange(stack):
    target = new_topic(stack)
    lines = sorted(capture_lines(BINANCE_CAPTURE) + capture_lines(KRAKEN_CAPTURE),
                   key=lambda line: line["receive_time_us"])
    result = replay("--from-capture", str(BINANCE_CAPTURE), "--from-capture", str(KRAKEN_CAPTURE),
                    "--to-topic", target)
    assert result.exit_code == 0, result.output
    assert f"replayed {len(lines):,} records" in result.stdout
    got = read_all(stack, target, len(lines))
    assert len(got) == len(lines)

    def key_of(line: dict) -> bytes:
        frame = orjson.loads(line["frame"])
        return (frame["data"]["s"] if line["exchange"] == "binance" else frame["data"][0]["symbol"]).encode()

    want = sorted((key_of(line), line["frame"].encode(), [
        (raw_headers.RECEIVE_TIME_US, str(line["receive_time_us"]).encode()),
        (raw_headers.CONNECTION_ID, b"replay"), (raw_headers.SOURCE, b"ws"),
    ], line["receive_time_us"] // 1000) for line in lines)
    assert sorted((m.key(), m.value(), m.headers(), m.timestamp()[1]) for m in got) == want
    # Per key, capture order (receive time) is kept.
    for key in {k for k, *_ in want}:
        assert [m.value() for m in got if m.key() == key] == [line["frame"].encode() for line in lines
                                                                if key_of(line) == key]


def test_capture_replay_with_time_range_and_symbols(stack):
    target = new_topic(stack)
    lines = capture_lines(KRAKEN_CAPTURE)
    symbol = orjson.loads(lines[0]["frame"])["data"][0]["symbol"]
    result = replay("--from-capture", str(KRAKEN_CAPTURE), "--to-topic", target, "--symbols", symbol,
                    "--until", str(lines[-1]["receive_time_us"] // 1000 + 1))
    assert result.exit_code == 0, result.output
    kept = [line for line in lines if orjson.loads(line["frame"])["data"][0]["symbol"] == symbol]
    assert f"replayed {len(kept)} records" in result.stdout
    assert [m.value() for m in read_all(stack, target, len(kept))] == [line["frame"].encode() for line in kept]


@pytest.mark.parametrize(("exchange", "capture", "parsers", "symbols"), [
    ("binance", BINANCE_CAPTURE, binance, SymbolMap.binance),
    ("kraken", KRAKEN_CAPTURE, kraken, SymbolMap.kraken),
])
def test_a_replayed_raw_topic_normalizes_to_the_same_records(stack, exchange, capture, parsers, symbols):
    source, copy = new_topic(stack), new_topic(stack)
    assert replay("--from-capture", str(capture), "--to-topic", source).exit_code == 0
    result = replay("--from-topic", source, "--to-topic", copy)
    assert result.exit_code == 0, result.output
    count = len(capture_lines(capture))

    def normalize(topic: str) -> list[tuple]:
        # The normalizer agent's own decision (agents/normalizer.py builds the same Dispatcher).
        dispatcher = Dispatcher(exchange, parsers.normalize, symbols(), TradeAvroCodec(1),
                                backfill=parsers.normalize_backfill, max_skew_s=get_settings().clock_skew_s)
        out = []
        for m in read_all(stack, topic, count):
            for o in dispatcher.dispatch(m.value(), m.key(), m.headers(), m.partition(), m.offset()):
                if o.topic == topics.DLQ:
                    out.append(("dlq", m.partition(), m.offset(), o.key, o.value))
                else:
                    trade = TradeAvroCodec(1).decode(o.value)
                    out.append(("trade", m.partition(), m.offset(), o.key, trade))
        return sorted(out, key=lambda row: (row[1], row[2]))

    original, replayed = normalize(source), normalize(copy)
    assert len(replayed) == len(original) >= count
    assert any(row[0] == "trade" for row in original)
    for (kind, _, _, key, out), (kind2, p2, o2, key2, out2) in zip(original, replayed):
        assert (kind2, key2) == (kind, key)
        if kind == "trade":
            # Lineage points at the copy; everything else is equal.
            assert (out2.raw_partition, out2.raw_offset) == (p2, o2)
            assert dataclasses.replace(out2, raw_partition=out.raw_partition, raw_offset=out.raw_offset) == out
        else:
            assert out2 == out


def test_replaying_a_topic_into_itself_is_refused(stack):
    source = new_topic(stack)
    fill(stack, source, 3)
    result = replay("--from-topic", source, "--to-topic", source)
    assert result.exit_code == 1
    assert f"refusing to replay {source} into itself" in result.output
    assert sum(end_offsets(stack, source).values()) == 3
    assert "Traceback" not in result.output


def test_bad_requests_give_one_clear_line(stack):
    source, target = new_topic(stack), new_topic(stack)
    fill(stack, source, 6)
    missing = f"test.replay.missing.{uuid.uuid4().hex[:8]}"
    cases = [
        (["--from-topic", missing, "--to-topic", target], f"source topic {missing} does not exist"),
        (["--from-topic", source, "--to-topic", target, "--since", "2030-01-01"], "nothing to replay"),
        (["--from-topic", source, "--to-topic", target, "--since", "2024-08-09", "--until", "2024-08-08"],
         "empty or inverted"),
        (["--from-topic", source, "--to-topic", target, "--start-offset", "5", "--end-offset", "2"],
         "empty or inverted"),
        (["--from-topic", source, "--to-topic", target, "--start-offset", "9:0"], "has no partition 9"),
        (["--from-topic", source, "--to-topic", target, "--since", "last tuesday"], "is not a time"),
        (["--from-topic", source, "--to-topic", target, "--speed", "0"], "--speed"),
        (["--to-topic", target], "pass --from-topic TOPIC or --from-capture FILE"),
        (["--from-capture", str(BINANCE_CAPTURE), "--to-topic", target, "--start-offset", "1"], "has no offsets"),
        (["--from-capture", "nope.jsonl.gz", "--to-topic", target], "capture file nope.jsonl.gz does not exist"),
    ]
    for args, message in cases:
        result = replay(*args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output
        assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1
    assert sum(end_offsets(stack, target).values()) == 0


def test_an_unreachable_broker_is_one_line_quickly(stack):
    port = free_port()
    started = time.monotonic()
    result = replay("--from-topic", "anything", "--to-topic", "elsewhere",
                    env={"STREAMAPP_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})
    elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert f"cannot reach the broker at 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output
    assert elapsed < 15
