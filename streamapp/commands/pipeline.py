"""``streamapp pipeline``: the whole pipeline on the local stack, in the background."""

from __future__ import annotations

import time

import click

from streamapp import pipeline, tables
from streamapp.clients.clickhouse import connect
from streamapp.operate import formats
from streamapp.commands.stack import echo_status, stack_settings
from streamapp.stack import services


@click.group("pipeline")
def pipeline_group() -> None:
    """Run everything on the local stack: stack, migrations, topics, normalizer and feeds
    (live exchanges when reachable, else the simulator replaying streamapp/captures/)."""


@pipeline_group.command()
@click.option("--source", type=click.Choice(["auto", "live", "simulator"]), default="auto", show_default=True,
              help="Where trades come from: the real exchanges, the simulator, or live when reachable.")
@click.option("--wait", "wait_s", default=120.0, show_default=True,
              help="Seconds to wait for the first candles (0: don't wait).")
@click.option("--workers", type=click.IntRange(1, pipeline.FLEET_MAX), default=1, show_default=True,
              help="Normalizer workers (worker, worker-2, ...) sharing the raw partitions in one consumer group.")
def up(source: str, wait_s: float, workers: int) -> None:
    """Start the pipeline (idempotent) and show the first candles.

    Running it again with more --workers adds workers; it never stops any
    (`streamapp pipeline down` stops them all)."""
    settings = stack_settings()
    click.echo("stack: starting (broker, registry, warehouse) ...")
    applied = pipeline.prepare(settings)
    click.echo(f"stack: healthy; migrations applied now: {', '.join(applied) or 'none (up to date)'}")
    if source == "auto":
        live, why = pipeline.exchanges_reachable()
        click.echo("source: live exchanges (reachable)" if live else
                   f"source: exchanges unreachable ({why}); replaying the bundled captures through the simulator")
    else:
        live = source == "live"
        click.echo(f"source: {'live exchanges' if live else 'the simulator replaying the bundled captures'}")

    def started(svc: services.Service, seconds: float) -> None:
        click.echo(f"{svc.name:<13} running  ({svc.describe}; {seconds:.1f}s)")

    services.up(settings, pipeline.processes(live, workers), on_started=started)
    if wait_s > 0:
        _show_first_candles(settings, wait_s)
    click.echo("logs: streamapp pipeline logs NAME; stop: streamapp pipeline down (then streamapp stack down)")


def _show_first_candles(settings, wait_s: float) -> None:
    client = connect(settings)
    view = tables.candles("1m")
    deadline = time.monotonic() + wait_s
    while client.command(f"SELECT count() FROM {view}") == 0:
        if time.monotonic() > deadline:
            click.echo(f"no candles in {view} after {wait_s:.0f}s: see `streamapp pipeline status` and the logs")
            return
        time.sleep(1)
    time.sleep(2)  # let the first burst land
    rows = client.query(
        f"SELECT exchange, symbol, count() AS candles, sum(trade_count) AS trades, max(window_start) AS last_window, "
        f"argMax(close, window_start) AS close FROM {view} "
        f"GROUP BY exchange, symbol ORDER BY exchange, symbol"
    ).result_rows
    click.echo("")
    formats.render(["exchange", "symbol", "1m candles", "trades", "last window", "close"], rows, "table",
                   title="first candles (UTC)", right=("1m candles", "trades", "close"))
    click.echo("see them: streamapp tables candles --exchange EXCHANGE --symbol SYMBOL [--plot candles.png]")


@pipeline_group.command()
def down() -> None:
    """Stop the feeds, simulator and worker (the stack keeps running)."""
    stopped = services.down(stack_settings(), pipeline.ALL)
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@pipeline_group.command()
def status() -> None:
    """Each pipeline process: pid, metrics address, memory, health. Exit 1 unless all that run are healthy."""
    rows = [row for row in services.status(stack_settings(), pipeline.ALL)
            if row.running or row.name not in {w.name for w in pipeline.FLEET[1:]}]  # idle fleet slots: no rows
    echo_status(rows)
    if any(row.running and not row.healthy for row in rows) or not any(row.running for row in rows):
        raise SystemExit(1)


@pipeline_group.command()
@click.argument("name", type=click.Choice([s.name for s in pipeline.ALL]))
@click.option("-n", "--lines", default=50, show_default=True)
def logs(name: str, lines: int) -> None:
    """Show a pipeline process's log."""
    click.echo(services.log_tail(stack_settings(), name, lines))
