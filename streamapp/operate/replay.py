"""``streamapp replay``: copy records from a topic or from capture files into a topic.

From a topic, each record keeps its key, value, headers and timestamp (and its
partition, when the target has as many); from a capture, each trade frame becomes
the raw record the feed would have written (key: exchange symbol, headers: the
capture's receive time, connection id ``replay``, source ``ws``). A range is
offsets (``[start, end)``, per partition or for all) and/or times
(``[since, until)``, found with ``offsets_for_times``). Nothing is ever written
into the topic being read.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from streamapp import headers as raw_headers
from streamapp.clients.kafka import ensure_topics
from streamapp.errors import StreamappError
from streamapp.feeds.frames import Kind
from streamapp.feeds.handler import protocol_for
from streamapp.operate.timeparse import format_ms
from streamapp.settings import Settings
from streamapp.simulator import capture

log = logging.getLogger(__name__)

CONNECTION_ID = b"replay"  # the connection-id header of records replayed from a capture
BROKER_TIMEOUT_S = 5.0
IDLE_TIMEOUT_S = 15.0  # a partition that neither yields records nor reaches its end for this long is given up

Offsets = int | dict[int, int] | None  # one offset for every partition, or per partition


# --- pure parts: arguments and ranges -------------------------------------------------------------

def parse_offsets(text: str | None, option: str) -> Offsets:
    """``"100"`` (every partition) or ``"0:100,2:50"`` (only the partitions named)."""
    if text is None:
        return None
    value = text.strip()
    try:
        if ":" not in value:
            offset = int(value)
            if offset < 0:
                raise ValueError
            return offset
        pairs = {}
        for item in value.split(","):
            partition, _, offset = item.partition(":")
            p, o = int(partition), int(offset)
            if p < 0 or o < 0 or p in pairs:
                raise ValueError
            pairs[p] = o
        return pairs
    except ValueError:
        raise StreamappError(
            f"{option} {text!r} is not an offset: use N (every partition) or P:N,P:N (those partitions only), "
            "offsets and partitions >= 0"
        ) from None


def parse_speed(text: str) -> float | None:
    """``max`` -> None (as fast as possible); ``N`` -> N times the original pace."""
    if text.strip().lower() == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        speed = 0.0
    if not speed > 0 or speed == float("inf"):
        raise StreamappError(f"--speed {text!r}: use max or a factor > 0 (1 = original pace, 10 = ten times faster)")
    return speed


def parse_symbols(values: Sequence[str]) -> frozenset[bytes] | None:
    """Comma-separated exchange symbols (record keys), any number of times; None: all."""
    symbols = frozenset(s.strip().encode() for v in values for s in v.split(",") if s.strip())
    return symbols or None


def check_time_range(since_ms: int | None, until_ms: int | None) -> None:
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        raise StreamappError(
            f"--since {format_ms(since_ms)} is not before --until {format_ms(until_ms)}: the range "
            "[since, until) is empty or inverted; swap them or widen it"
        )


def check_offset_range(start: Offsets, end: Offsets) -> None:
    """Refuse start >= end where both are given for a partition (or for all)."""
    if start is None or end is None:
        return
    if isinstance(start, int) and isinstance(end, int):
        pairs = {"every partition": (start, end)}
    else:
        starts = start if isinstance(start, dict) else {}
        ends = end if isinstance(end, dict) else {}
        pairs = {f"partition {p}": (starts.get(p, start if isinstance(start, int) else None),
                                    ends.get(p, end if isinstance(end, int) else None))
                 for p in sorted(set(starts) | set(ends))}
    for where, (s, e) in pairs.items():
        if s is not None and e is not None and s >= e:
            raise StreamappError(
                f"--start-offset {s} is not before --end-offset {e} ({where}): the range [start, end) is "
                "empty or inverted"
            )


def plan_ranges(
    topic: str, watermarks: dict[int, tuple[int, int]], *, start: Offsets = None, end: Offsets = None,
    since: dict[int, int] | None = None, until: dict[int, int] | None = None,
) -> dict[int, tuple[int, int]]:
    """Offsets ``[first, end)`` to read per partition.

    ``watermarks``: partition -> (low, high); ``since``/``until``: partition -> first offset at
    or after that time (-1: none, i.e. the high watermark). Per-partition offset options select
    the partitions they name.
    """
    check_offset_range(start, end)
    named = set(start if isinstance(start, dict) else ()) | set(end if isinstance(end, dict) else ())
    unknown = sorted(named - set(watermarks))
    if unknown:
        raise StreamappError(f"{topic} has no partition {unknown[0]} (it has {len(watermarks)}: "
                             f"0-{len(watermarks) - 1})")

    def bound(option: Offsets, p: int) -> int | None:
        return option.get(p) if isinstance(option, dict) else option

    def at(times: dict[int, int] | None, p: int, high: int) -> int | None:
        if times is None:
            return None
        return high if times.get(p, -1) < 0 else times[p]

    ranges = {}
    for p in sorted(named or watermarks):
        low, high = watermarks[p]
        firsts = [o for o in (low, bound(start, p), at(since, p, high)) if o is not None]
        ends = [o for o in (high, bound(end, p), at(until, p, high)) if o is not None]
        first, last = min(max(firsts), high), min(ends)
        ranges[p] = (first, max(first, last))
    if sum(e - s for s, e in ranges.values()) == 0:
        have = ", ".join(f"{p}: {lo}-{hi}" for p, (lo, hi) in sorted(watermarks.items()))
        raise StreamappError(f"nothing to replay: {topic} has no records in the range asked for "
                             f"(its partitions hold offsets {have or 'none'}); widen the range")
    return ranges


# --- records in, records out ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None
    timestamp_ms: int | None
    partition: int | None  # the source partition; None for capture records


@dataclass
class ReplayOptions:
    to_topic: str
    from_topic: str | None = None
    from_capture: Sequence[Path] = ()
    start: Offsets = None
    end: Offsets = None
    since_ms: int | None = None
    until_ms: int | None = None
    symbols: frozenset[bytes] | None = None
    speed: float | None = None  # None: as fast as possible
    create: bool = False
    progress: bool = True
    linger_ms: int = 20


@dataclass
class Summary:
    records: int = 0
    bytes: int = 0
    seconds: float = 0.0
    skipped: int = 0  # read but left out by --symbols / --since / --until, or control frames of a capture
    partitions_kept: bool = False
    per_partition: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def line(self, source: str, target: str) -> str:
        skipped = f", {self.skipped:,} skipped by the filters" if self.skipped else ""
        return (f"replayed {self.records:,} records ({self.bytes / 1e6:,.2f} MB) from {source} to {target} in "
                f"{self.seconds:,.2f} s: {self.rate:,.0f} records/s{skipped}")


def _consumer_config(settings: Settings) -> dict:
    return settings.kafka_client_config() | {
        # assign() only: this group never joins or commits; librdkafka just wants an id.
        "group.id": f"streamapp-replay-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "socket.timeout.ms": int(BROKER_TIMEOUT_S * 1000),
        "log_level": 0,  # reachability is checked and reported below; librdkafka's own lines are noise
    }


def _metadata(consumer: Consumer, settings: Settings):
    try:
        return consumer.list_topics(timeout=BROKER_TIMEOUT_S)
    except KafkaException as exc:
        raise StreamappError(
            f"cannot reach the broker at {settings.kafka_bootstrap_servers} ({exc.args[0].str()}); is it running "
            "(`streamapp stack status`), or is STREAMAPP_KAFKA_BOOTSTRAP_SERVERS wrong?"
        ) from exc


class TopicSource:
    """Records of ``[first, end)`` per partition of a topic, committed ones only, each partition in order."""

    def __init__(self, consumer: Consumer, topic: str, ranges: dict[int, tuple[int, int]]):
        self.consumer = consumer
        self.topic = topic
        self.ranges = {p: r for p, r in ranges.items() if r[1] > r[0]}
        self.total = sum(e - s for s, e in self.ranges.values())

    def __iter__(self) -> Iterator[tuple[Record | None, int]]:
        """(record or None, offsets advanced): progress counts offsets, so transaction markers count too."""
        position = {p: s for p, (s, _) in self.ranges.items()}
        self.consumer.assign([TopicPartition(self.topic, p, s) for p, (s, _) in self.ranges.items()])
        remaining = set(self.ranges)
        last_progress = time.monotonic()
        while remaining:
            batch = self.consumer.consume(1000, 0.2)
            if not batch and time.monotonic() - last_progress > IDLE_TIMEOUT_S:
                log.warning("%s partitions %s gave nothing for %.0f s before their end offsets (an open "
                            "transaction?): stopped there", self.topic, sorted(remaining), IDLE_TIMEOUT_S)
                return
            for msg in batch:
                p = msg.partition()
                if p not in remaining:
                    continue
                end = self.ranges[p][1]
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        reached = min(msg.offset(), end)
                        if reached >= end:
                            remaining.discard(p)
                        if reached > position[p]:
                            yield None, reached - position[p]
                            position[p] = reached
                            last_progress = time.monotonic()
                        continue
                    raise StreamappError(f"reading {self.topic}[{p}] failed: {err.str()}")
                offset = msg.offset()
                if offset >= end:
                    remaining.discard(p)
                    yield None, end - position[p]
                    position[p] = end
                    continue
                ts_type, ts = msg.timestamp()
                record = Record(msg.key(), msg.value(), msg.headers(), ts if ts_type != 0 else None, p)
                advanced = offset + 1 - position[p]
                position[p] = offset + 1
                last_progress = time.monotonic()
                if position[p] >= end:
                    remaining.discard(p)
                yield record, advanced


def capture_records(paths: Sequence[Path]) -> tuple[list[Record], int]:
    """The raw records the feed would have written for the captures' trade frames, in receive-time order,
    and how many frames were not trades (acks, heartbeats: the feed does not publish them)."""
    lines = sorted((line for path in paths for line in capture.read_lines(Path(path))), key=lambda line: line[0])
    records, other = [], 0
    for receive_us, exchange, frame in lines:
        classified = protocol_for(exchange).classify(frame)
        if classified.kind is not Kind.TRADE:
            other += 1
            continue
        records.append(Record(
            (classified.key or "").encode(), frame,
            [(raw_headers.RECEIVE_TIME_US, str(receive_us).encode()), (raw_headers.CONNECTION_ID, CONNECTION_ID),
             (raw_headers.SOURCE, raw_headers.SOURCE_WS)],
            receive_us // 1000, None,
        ))
    return records, other


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]replay"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>9,.0f} rec/s"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=Console(stderr=True), disable=not enabled, transient=False,
    )


def replay(settings: Settings, opts: ReplayOptions) -> Summary:
    """Copy what ``opts`` selects into ``opts.to_topic``; raise :class:`StreamappError` on a bad request."""
    if bool(opts.from_topic) == bool(opts.from_capture):
        raise StreamappError("replay reads from one place: pass --from-topic TOPIC or --from-capture FILE (not both)")
    if opts.from_capture and (opts.start is not None or opts.end is not None):
        raise StreamappError("--start-offset/--end-offset select records of --from-topic; a capture has no "
                             "offsets: use --since/--until")
    if opts.from_topic and opts.from_topic == opts.to_topic:
        raise StreamappError(f"refusing to replay {opts.from_topic} into itself: it would read its own output "
                             "forever; pass another --to-topic")
    check_time_range(opts.since_ms, opts.until_ms)
    check_offset_range(opts.start, opts.end)

    consumer = Consumer(_consumer_config(settings))
    try:
        meta = _metadata(consumer, settings)
        if opts.from_topic:
            source = _topic_source(consumer, meta, opts)
            source_partitions = len(meta.topics[opts.from_topic].partitions)
        else:
            records, other = capture_records(opts.from_capture)
            source = [(r, 1) for r in records]
            source_partitions = None
        target_meta = meta.topics.get(opts.to_topic)
        if target_meta is None or target_meta.error is not None:
            if not opts.create:
                raise StreamappError(f"target topic {opts.to_topic} does not exist: create it, or pass --create "
                                     "to create it with the source's partition count")
            ensure_topics(settings, [opts.to_topic], partitions=source_partitions, timeout_s=BROKER_TIMEOUT_S * 2)
            target_partitions = source_partitions or settings.topic_partitions
        else:
            target_partitions = len(target_meta.partitions)
        keep_partitions = source_partitions is not None and target_partitions >= source_partitions
        summary = _copy(settings, opts, source, keep_partitions)
        if opts.from_capture:
            summary.skipped += other
        return summary
    finally:
        consumer.close()


def _topic_source(consumer: Consumer, meta, opts: ReplayOptions) -> TopicSource:
    topic = opts.from_topic
    found = meta.topics.get(topic)
    if found is None or found.error is not None:
        known = sorted(t for t in meta.topics if not t.startswith("_"))
        hint = f" (topics: {', '.join(known[:8])}{', …' if len(known) > 8 else ''})" if known else ""
        raise StreamappError(f"source topic {topic} does not exist on the broker{hint}: check --from-topic")
    partitions = sorted(found.partitions)
    watermarks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=BROKER_TIMEOUT_S)
                  for p in partitions}
    since = _offsets_for_time(consumer, topic, partitions, opts.since_ms)
    until = _offsets_for_time(consumer, topic, partitions, opts.until_ms)
    ranges = plan_ranges(topic, watermarks, start=opts.start, end=opts.end, since=since, until=until)
    return TopicSource(consumer, topic, ranges)


def _offsets_for_time(consumer: Consumer, topic: str, partitions: list[int], ms: int | None) -> dict[int, int] | None:
    """Per partition, the first offset whose timestamp is >= ``ms`` (-1: none)."""
    if ms is None:
        return None
    found = consumer.offsets_for_times([TopicPartition(topic, p, ms) for p in partitions], timeout=BROKER_TIMEOUT_S)
    return {tp.partition: tp.offset for tp in found}


def _copy(settings: Settings, opts: ReplayOptions, source, keep_partitions: bool) -> Summary:
    summary = Summary(partitions_kept=keep_partitions)
    failed = {"count": 0, "first": ""}

    def delivered(err, _msg) -> None:
        if err is not None:
            failed["count"] += 1
            failed["first"] = failed["first"] or err.str()

    producer = Producer(settings.kafka_client_config() | {
        "enable.idempotence": True,  # no duplicates, per-partition order across retries
        "acks": "all",
        "linger.ms": opts.linger_ms,
        "compression.type": "lz4",
        "client.id": "streamapp-replay",
        "log_level": 0,
    })
    total = source.total if isinstance(source, TopicSource) else len(source)
    pace_origin: tuple[int, float] | None = None
    started = time.monotonic()
    last_update = 0.0
    with _progress(opts.progress) as progress:
        task = progress.add_task("replay", total=total, rate=0.0)
        done = 0
        for record, advanced in source:
            done += advanced
            if record is not None and _selected(record, opts):
                if opts.speed is not None and record.timestamp_ms is not None:
                    if pace_origin is None:
                        pace_origin = (record.timestamp_ms, time.monotonic())
                    due = pace_origin[1] + (record.timestamp_ms - pace_origin[0]) / 1000 / opts.speed
                    while (wait := due - time.monotonic()) > 0:
                        producer.poll(min(wait, 0.1))
                _produce(producer, opts.to_topic, record, keep_partitions, delivered)
                summary.records += 1
                summary.bytes += len(record.value or b"") + len(record.key or b"")
                if record.partition is not None:
                    summary.per_partition[record.partition] = summary.per_partition.get(record.partition, 0) + 1
            elif record is not None:
                summary.skipped += 1
            now = time.monotonic()
            if now - last_update > 0.1:
                last_update = now
                producer.poll(0)
                progress.update(task, completed=done, rate=summary.records / max(now - started, 1e-9))
        remaining = producer.flush(60)
        summary.seconds = time.monotonic() - started
        progress.update(task, completed=total, rate=summary.rate)
    if remaining:
        raise StreamappError(f"{remaining} records still undelivered to {opts.to_topic} after 60 s: is the broker "
                             "up? The target may now hold part of the range")
    if failed["count"]:
        raise StreamappError(f"{failed['count']} records were not delivered to {opts.to_topic} ({failed['first']}); "
                             "the target holds part of the range")
    return summary


def _selected(record: Record, opts: ReplayOptions) -> bool:
    if opts.symbols is not None and record.key not in opts.symbols:
        return False
    ts = record.timestamp_ms
    if ts is not None:
        if opts.since_ms is not None and ts < opts.since_ms:
            return False
        if opts.until_ms is not None and ts >= opts.until_ms:
            return False
    return True


def _produce(producer: Producer, topic: str, record: Record, keep_partition: bool, on_delivery) -> None:
    kwargs = {"key": record.key, "on_delivery": on_delivery}
    if record.headers:
        kwargs["headers"] = record.headers
    if record.timestamp_ms is not None:
        kwargs["timestamp"] = record.timestamp_ms
    if keep_partition and record.partition is not None:
        kwargs["partition"] = record.partition
    while True:
        try:
            producer.produce(topic, record.value, **kwargs)
            return
        except BufferError:  # the local queue is full: let deliveries drain it
            producer.poll(0.1)
