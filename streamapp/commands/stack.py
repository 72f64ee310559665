"""``streamapp stack``: the local stack (broker, schema registry, warehouse) on loopback."""

from __future__ import annotations

import json
import time

import click

from streamapp.settings import get_settings
from streamapp.stack import services


@click.group()
def stack() -> None:
    """Start, stop and inspect the local stack: Apache Kafka, a schema registry and
    embedded ClickHouse, on 127.0.0.1, with all state under $STREAMAPP_HOME (default .stack/)."""


@stack.command()
def up() -> None:
    """Start every service (idempotent) and wait until each is healthy.

    The first run fetches the Kafka jars with Maven into ~/.cache/streamapp.
    """
    settings = get_settings()
    began = time.monotonic()

    def started(svc: services.Service, seconds: float) -> None:
        host, port = svc.host_port(settings)
        click.echo(f"{svc.name:<10} healthy at {host}:{port}  ({seconds:.1f}s)")

    services.up(settings, on_started=started)
    click.echo(f"stack up in {time.monotonic() - began:.1f}s; data in {settings.home.resolve()}")


@stack.command()
def down() -> None:
    """Stop every service cleanly; the data is kept for the next `up`."""
    stopped = services.down(get_settings())
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@stack.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(as_json: bool) -> None:
    """Show each service, its pid, address, memory and health. Exit 1 unless all are healthy."""
    rows = services.status(get_settings())
    if as_json:
        click.echo(json.dumps([row.__dict__ for row in rows], indent=2))
    else:
        echo_status(rows)
    if not all(row.healthy for row in rows):
        raise SystemExit(1)


def echo_status(rows: list[services.ServiceStatus]) -> None:
    """One line per process: name, pid, address, memory, health (also `streamapp pipeline status`)."""
    width = max(len("service"), *(len(row.name) for row in rows))
    click.echo(f"{'service':<{width}} {'pid':>7}  {'address':<16} {'memory':>8}  health")
    for row in rows:
        health = "healthy" if row.healthy else ("UNHEALTHY" if row.running else "stopped")
        memory = f"{row.rss_mb:.0f} MiB" if row.rss_mb is not None else "-"
        click.echo(f"{row.name:<{width}} {row.pid or '-':>7}  {row.address:<16} {memory:>8}  {health}")


@stack.command()
@click.argument("service", type=click.Choice([s.name for s in services.SERVICES]))
@click.option("-n", "--lines", default=50, show_default=True, help="How many lines from the end.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C to stop).")
def logs(service: str, lines: int, follow: bool) -> None:
    """Show a service's log (broker, registry or warehouse)."""
    settings = get_settings()
    click.echo(services.log_tail(settings, service, lines))
    if follow:
        path = services.log_file(settings, service)
        with path.open(errors="replace") as handle:
            handle.seek(0, 2)
            while True:
                line = handle.readline()
                if line:
                    click.echo(line, nl=False)
                else:
                    time.sleep(0.5)
