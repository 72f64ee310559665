"""``streamapp exchange``: the exchange simulator that replays captures over WebSocket."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from streamapp.settings import get_settings


@click.group()
def exchange() -> None:
    """A local stand-in for Binance (spot, USDⓈ-M futures) and Kraken, replaying capture files (offline runs, tests)."""


@exchange.command()
@click.option("--capture", "captures", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Capture file(s) to replay (streamapp/captures/*.jsonl.gz or `feed record` output). Repeat for more.")
@click.option("--speed", default="max", show_default=True,
              help="Replay speed: 1 (as recorded), 10 (ten times faster), any factor, or max.")
@click.option("--live", is_flag=True,
              help="Run the streams on the wall clock from the first subscription, listened to or not, as a real exchange: a "
                   "client that reconnects misses what was sent meanwhile (default: it resumes where it stopped). "
                   "Needs a finite --speed.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, help="Port (default: setting simulator_port, 9200).")
@click.option("--drop-every", type=int, default=0, help="Abort the connection after every N trade frames.")
@click.option("--stall-every", type=int, default=0, help="Go silent after every N trade frames ...")
@click.option("--stall-seconds", type=float, default=5.0, show_default=True, help="... for this long.")
@click.option("--malformed-every", type=int, default=0, help="Send a truncated frame after every N trade frames.")
@click.option("--skip-every", type=int, default=0, help="Skip trade frames (a gap in ids) after every N ...")
@click.option("--skip-count", type=int, default=1, show_default=True, help="... this many.")
@click.option("--shutdown-every", type=int, default=0,
              help="Announce serverShutdown (binance) and close 2 s later, after every N trade frames.")
@click.option("--max-connection-seconds", type=float, default=0,
              help="Close every connection after this long (Binance's 24 h cut-off, shortened).")
@click.option("--repeat", type=click.IntRange(1), default=1, show_default=True,
              help="Replay each stream this many times in a row, each round with trade ids moved on by the stream's "
                   "id span and times by the capture's duration (Binance captures; a long run from a short capture).")
def serve(captures, speed, live, host, port, drop_every, stall_every, stall_seconds, malformed_every, skip_every,
          skip_count, shutdown_every, max_connection_seconds, repeat) -> None:
    """Serve captures over WebSocket, each as the exchange its lines name: Binance spot on /stream,
    Binance USDⓈ-M futures on /fstream/stream, Kraken v2 on /v2; REST history on
    /api/v3/historicalTrades (spot), /fapi/v1/historicalTrades (futures) and /0/public/Trades;
    faults on POST /control/<fault> (drop, stall, malformed, skip, shutdown; ?arg=N), metrics on /metrics.

    \b
        streamapp exchange serve --speed 10 \\
          --capture streamapp/captures/binance_spot_btcusdt_trades_2024-08-08.jsonl.gz \\
          --capture streamapp/captures/binance_usdm_btcusdt_trades_2024-08-08.jsonl.gz
    """
    from streamapp.feeds.handler import run_until_signalled
    from streamapp.simulator.capture import load
    from streamapp.simulator.faults import Faults
    from streamapp.simulator.server import Simulator, parse_speed
    from streamapp.simulator.server import serve as serve_simulator

    try:
        factor = parse_speed(speed)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--speed") from exc
    timelines = load(list(captures))
    faults = Faults(drop_every=drop_every, stall_every=stall_every, stall_s=stall_seconds,
                    malformed_every=malformed_every, skip_every=skip_every, skip_count=skip_count,
                    shutdown_every=shutdown_every, max_connection_s=max_connection_seconds)
    if live and factor == float("inf"):
        raise click.BadParameter("--live needs a finite speed (1, 10, ...), not max", param_hint="--speed")
    try:
        simulator = Simulator(timelines, speed=factor, faults=faults, live=live, repeat=repeat)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--repeat") from exc
    port = port or get_settings().simulator_port
    for name, timeline in timelines.items():
        if timeline.items:
            click.echo(f"{name}: {len(timeline.items)} frames on {len(timeline.by_stream)} stream(s): "
                       f"{', '.join(sorted(timeline.by_stream))}", err=True)
    click.echo(f"serving on ws://{host}:{port}/stream (binance), ws://{host}:{port}/fstream/stream (binanceusdm), "
               f"ws://{host}:{port}/v2 (kraken)", err=True)

    async def go(stop: asyncio.Event) -> None:
        await serve_simulator(simulator, host, port, stop)

    run_until_signalled(go)
