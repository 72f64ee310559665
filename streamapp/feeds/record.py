"""``feed record``: what a live connection receives, written to rotated, gzip-compressed capture files.

One JSON line per frame, control frames included (the simulator replays captures)::

    {"receive_time_us":1723161300031000,"exchange":"binance","connection_id":"binance-0-1-ab12cd34",
     "frame":"{\\"stream\\":\\"btcusdt@trade\\",\\"data\\":{...}}"}

A file is written as ``<name>.partial`` and renamed when rotated (by size or age) or closed.
"""

from __future__ import annotations

import gzip
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson

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


async def record(options, directory: Path, stop, *, rotate_bytes: int = 64 << 20, rotate_s: float = 3600.0) -> CaptureWriter:
    """Record ``options.exchange``'s frames for ``options.symbols`` into ``directory`` until ``stop`` is set."""
    from streamapp.feeds.handler import build_config
    from streamapp.feeds.transport import FeedRunner

    protocol, config = build_config(options)
    writer = CaptureWriter(directory, options.exchange, rotate_bytes=rotate_bytes, rotate_s=rotate_s)
    try:
        await FeedRunner(config, protocol, writer).run(stop)
    finally:
        writer.close()
        log.info("recorded %d frames into %d file(s) in %s", writer.frames, len(writer.files), directory)
    return writer
