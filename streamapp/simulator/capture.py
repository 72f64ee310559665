"""Capture files (JSON lines, optionally gzip): what ``feed record`` writes and the simulator replays.

One JSON line per frame received, control frames included::

    {"receive_time_us":1723161300031000,"exchange":"binance","connection_id":"binance-0-1-ab12cd34",
     "frame":"{\\"stream\\":\\"btcusdt@trade\\",\\"data\\":{...}}"}

(``connection_id`` optional). :class:`CaptureWriter` writes a file as ``<name>.partial`` and
renames it when rotated (by size or age) or closed. Of what :func:`load` reads, only frames that
belong to a stream are replayed (Binance spot and USDⓈ-M futures: anything with ``"stream"``;
Kraken v2: ``trade`` messages); the simulator makes the control frames (acks, heartbeats, status) itself.
"""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from streamapp.errors import StreamappError
from streamapp.exchanges import BINANCE, BINANCEUSDM, EXCHANGES, KRAKEN
from streamapp.feeds.frames import Frame

log = logging.getLogger(__name__)


def capture_line(receive_us: int, exchange: str, data: bytes, connection_id: str | None = None) -> bytes:
    record = {"receive_time_us": receive_us, "exchange": exchange}
    if connection_id:
        record["connection_id"] = connection_id
    record["frame"] = data.decode()
    return orjson.dumps(record) + b"\n"


class CaptureWriter:
    """A sink for :class:`~streamapp.feeds.transport.FeedRunner` that records every frame."""

    def __init__(self, directory: Path, exchange: str, *, rotate_bytes: int = 64 << 20, rotate_s: float = 3600.0):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.exchange = exchange
        self.rotate_bytes = rotate_bytes
        self.rotate_s = rotate_s
        self.files: list[Path] = []
        self.frames = 0
        self._file: gzip.GzipFile | None = None
        self._path: Path | None = None
        self._opened = 0.0
        self._written = 0

    def handle(self, conn_id: str, receive_us: int, received: float, data: bytes, frame: Frame) -> None:
        if self._file is None or self._written >= self.rotate_bytes or time.monotonic() - self._opened >= self.rotate_s:
            self._rotate()
        line = capture_line(receive_us, self.exchange, data, conn_id)
        assert self._file is not None
        self._file.write(line)
        self._written += len(line)
        self.frames += 1

    def _rotate(self) -> None:
        self._finish()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        self._path = self.directory / f"{self.exchange}-{stamp}.jsonl.gz"
        self._file = gzip.open(self._path.with_name(self._path.name + ".partial"), "wb")
        self._opened = time.monotonic()
        self._written = 0
        log.info("recording %s frames to %s", self.exchange, self._path)

    def _finish(self) -> None:
        if self._file is None or self._path is None:
            return
        self._file.close()
        self._path.with_name(self._path.name + ".partial").rename(self._path)
        self.files.append(self._path)
        self._file = None

    def close(self) -> None:
        self._finish()


@dataclass(frozen=True)
class Item:
    seq: int             # position in the exchange's merged timeline
    ts_us: int
    stream: str          # Binance (spot, futures): "btcusdt@trade"; Kraken: "BTC/USD"
    frame: bytes
    trades: tuple[dict, ...]  # parsed trade payloads (for REST history and Kraken snapshots)


@dataclass
class Timeline:
    """One exchange's replayable frames, by stream, in capture order."""

    exchange: str
    items: list[Item] = field(default_factory=list)
    by_stream: dict[str, list[Item]] = field(default_factory=dict)

    def add(self, ts_us: int, stream: str, frame: bytes, trades: tuple[dict, ...]) -> None:
        item = Item(len(self.items), ts_us, stream, frame, trades)
        self.items.append(item)
        self.by_stream.setdefault(stream, []).append(item)


def open_capture(path: Path):
    path = Path(path)
    if not path.exists():
        raise StreamappError(f"capture file {path} does not exist: pass a file from streamapp/captures/ or `feed record`")
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def read_lines(path: Path):
    with open_capture(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
                yield int(rec["receive_time_us"]), rec["exchange"], rec["frame"].encode()
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise StreamappError(f"{path}:{n}: not a capture line ({exc}); expected "
                                     '{"receive_time_us":..,"exchange":..,"frame":".."}') from exc


def _stream_of(exchange: str, frame: bytes) -> tuple[str, tuple[dict, ...]] | None:
    try:
        msg = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(msg, dict):
        return None
    if exchange in (BINANCE, BINANCEUSDM) and isinstance(msg.get("stream"), str) and isinstance(msg.get("data"), dict):
        data = msg["data"]
        return msg["stream"], ((data,) if data.get("e") == "trade" else ())
    if exchange == KRAKEN and msg.get("channel") == "trade" and msg.get("data"):
        return msg["data"][0]["symbol"], tuple(msg["data"])
    return None


def load(paths: list[Path]) -> dict[str, Timeline]:
    """Timelines per exchange from capture files, merged in receive-time order."""
    lines = []
    sources: dict[tuple[str, str], Path] = {}
    for path in paths:
        for ts_us, exchange, frame in read_lines(path):
            if exchange not in EXCHANGES:
                raise StreamappError(f"{path}: unknown exchange {exchange!r} (known: {', '.join(EXCHANGES)})")
            found = _stream_of(exchange, frame)
            if found is None:
                continue
            stream, trades = found
            owner = sources.setdefault((exchange, stream), Path(path))
            if owner != Path(path):
                raise StreamappError(f"{path} and {owner} both carry {exchange} stream {stream}: serve one of them")
            lines.append((ts_us, exchange, stream, frame, trades))
    lines.sort(key=lambda line: line[0])  # stable: capture order within equal times
    timelines = {e: Timeline(e) for e in EXCHANGES}
    for ts_us, exchange, stream, frame, trades in lines:
        timelines[exchange].add(ts_us, stream, frame, trades)
    return timelines


def synthetic_binance_frames(*, rate: int, seconds: int, first_id: int, symbol: str = "BTCUSDT",
                             start_ms: int | None = None, seed: int | None = None,
                             tail: tuple[int, int] = (0, 0)) -> Iterator[tuple[int, bytes]]:
    """(trade time ms, combined-stream frame) of a Binance ``<symbol>@trade`` stream at a steady ``rate``
    trades/s for ``seconds``, one trade a frame, ids ``first_id`` onwards, prices a random walk (tick 0.1),
    from ``start_ms`` (default: now), then ``tail`` (rate, seconds) more: a quiet end after which a client
    still sees later ids (a feed finds a gap only at the next frame)."""
    import random

    rng = random.Random(seed)
    start_ms = int(time.time() * 1000) if start_ms is None else start_ms
    stream = f"{symbol.lower()}@trade"
    price = 600000  # tenths
    main, (tail_rate, tail_s) = rate * seconds, tail
    times = [start_ms + n * 1000 // rate for n in range(main)]
    times += [start_ms + seconds * 1000 + n * 1000 // tail_rate for n in range(tail_rate * tail_s)]
    for n, ts in enumerate(times):
        price = max(10, price + rng.randint(-50, 50))
        data = {"e": "trade", "E": ts, "T": ts, "s": symbol, "t": first_id + n, "p": f"{price // 10}.{price % 10}",
                "q": f"{rng.randint(1, 500) / 1000:.3f}", "X": "MARKET", "m": rng.random() < 0.5}
        yield ts, orjson.dumps({"stream": stream, "data": data})


def synthetic_binance(path: Path, *, first_id: int, **frames: Any) -> tuple[int, int]:
    """A capture file of :func:`synthetic_binance_frames` (same arguments). For load runs (benchmarks, fault
    tests): fresh ids each run keep Silver from dropping them as repeats. Returns the first and last trade id."""
    last = first_id - 1
    with gzip.open(path, "wb") as out:
        for ts, frame in synthetic_binance_frames(first_id=first_id, **frames):
            out.write(capture_line(ts * 1000, BINANCE, frame))
            last += 1
    return first_id, last
