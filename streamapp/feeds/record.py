"""``feed record``: what a live connection receives, written to rotated, gzip-compressed capture files
(the format, written and read, is :mod:`streamapp.simulator.capture`)."""

from __future__ import annotations

import logging
from pathlib import Path

from streamapp.simulator.capture import CaptureWriter

log = logging.getLogger(__name__)


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
