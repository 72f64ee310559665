"""``streamapp replay``: copy a topic's records, or a capture's frames, into a topic."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from streamapp.operate import replay as ops
from streamapp.operate.timeparse import parse_time_ms
from streamapp.settings import get_settings


@click.command()
@click.option("--to-topic", required=True, help="Topic to write to (never the source).")
@click.option("--from-topic", help="Topic to copy records from (keys, values, headers, timestamps kept).")
@click.option("--from-capture", "from_capture", multiple=True, type=click.Path(path_type=Path),
              help="Capture file (gzip JSON lines) whose trade frames become raw records; repeat for more.")
@click.option("--start-offset", help="First offset: N for every partition, or P:N,P:N for those partitions only.")
@click.option("--end-offset", help="Stop before this offset (exclusive): N, or P:N,P:N.")
@click.option("--since", help="First record time (inclusive): ISO 8601 (no zone = UTC) or epoch ms.")
@click.option("--until", help="Last record time (exclusive): ISO 8601 or epoch ms.")
@click.option("--symbols", multiple=True, help="Only these record keys (exchange symbols), comma-separated.")
@click.option("--speed", default="max", show_default=True,
              help="max, or N: N times the original pace (by record timestamps).")
@click.option("--create", is_flag=True, help="Create --to-topic if missing (source's partition count).")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when a terminal).")
def replay(to_topic, from_topic, from_capture, start_offset, end_offset, since, until, symbols, speed, create,
           progress) -> None:
    """Copy records between offsets or times, optionally only some symbols, as fast as possible or paced.

    \b
      streamapp replay --from-topic market.crypto.trades.binance.raw --to-topic replay.binance.raw \\
          --since 2024-08-08T23:55:00Z --until 2024-08-08T23:58:00Z --speed 10 --create
      streamapp replay --from-capture streamapp/captures/binance_spot_btcusdt_trades_2024-08-08.jsonl.gz \\
          --to-topic market.crypto.trades.binance.raw
    """
    options = ops.ReplayOptions(
        to_topic=to_topic, from_topic=from_topic, from_capture=from_capture,
        start=ops.parse_offsets(start_offset, "--start-offset"), end=ops.parse_offsets(end_offset, "--end-offset"),
        since_ms=None if since is None else parse_time_ms(since, "--since"),
        until_ms=None if until is None else parse_time_ms(until, "--until"),
        symbols=ops.parse_symbols(symbols), speed=ops.parse_speed(speed), create=create,
        progress=sys.stderr.isatty() if progress is None else progress,
    )
    summary = ops.replay(get_settings(), options)
    click.echo(summary.line(from_topic or ", ".join(p.name for p in from_capture), to_topic))
