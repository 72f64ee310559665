"""``streamapp stack``: the local stack (broker, schema registry, warehouse) on loopback."""

from __future__ import annotations

import json
import time

import click

from streamapp.settings import Settings, get_settings
from streamapp.stack import services


@click.group()
def stack() -> None:
    """Start, stop and inspect the local stack: Apache Kafka, a schema registry and
    embedded ClickHouse, on 127.0.0.1, with all state under $STREAMAPP_HOME (default .stack/)."""


def stack_settings(brokers: int | None = None) -> Settings:
    """The settings for this stack: ``--brokers`` wins, then STREAMAPP_STACK_BROKERS, then the stack's own size."""
    settings = get_settings()
    return services.sized(settings, brokers) if brokers is not None else services.for_stack(settings)


@stack.command()
@click.option("--brokers", type=click.IntRange(1, 9), default=None,
              help="Kafka nodes (KRaft brokers and controllers); sets STREAMAPP_STACK_BROKERS. With 3 or more, "
                   "topics get 3 replicas and min.insync.replicas=2.  [default: the stack's size, else 1]")
@click.option("--with-prometheus", is_flag=True,
              help="Also run Prometheus (the `prometheus` binary, installed by `make install`) at "
                   "STREAMAPP_PROMETHEUS_URL, scraping every process the stack and `pipeline up` start and "
                   "loading the alert rules streamapp ships (streamapp/stack/prometheus-rules.yml). `stack down` stops it too.")
def up(brokers: int | None, with_prometheus: bool) -> None:
    """Start every service (idempotent) and wait until each is healthy.

    The first run fetches the Kafka jars with Maven into ~/.cache/streamapp.
    A cluster's nodes listen on every second port from the broker's
    (9092, 9094, 9096 by default); clients should list them all.
    """
    settings = stack_settings(brokers)
    began = time.monotonic()

    def started(svc: services.Service, seconds: float) -> None:
        host, port = svc.host_port(settings)
        click.echo(f"{svc.name:<10} healthy at {host}:{port}  ({seconds:.1f}s)")

    services.up(settings, services.stack_services(settings, with_prometheus=with_prometheus), on_started=started)
    click.echo(f"stack up in {time.monotonic() - began:.1f}s; data in {settings.home.resolve()}")
    if settings.stack_brokers > 1:
        click.echo(f"{settings.stack_brokers} brokers: export STREAMAPP_STACK_BROKERS={settings.stack_brokers} "
                   f"STREAMAPP_KAFKA_BOOTSTRAP_SERVERS={settings.stack_bootstrap_servers}")


@stack.command()
def down() -> None:
    """Stop every service cleanly; the data is kept for the next `up`."""
    stopped = services.down(stack_settings())
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@stack.command("stop")
@click.argument("service")
def stop_one(service: str) -> None:
    """Stop one service (broker, broker-2, registry, warehouse, prometheus, ...), e.g. to rehearse a fault.

    \b
      streamapp stack stop broker-2     # a 3-broker stack keeps serving
      streamapp stack start broker-2    # it rejoins and catches up
    """
    settings = stack_settings()
    svc = services.service(settings, service)
    click.echo(f"stopped {svc.name}" if services.stop(settings, svc) else f"{svc.name} was not running")


@stack.command("start")
@click.argument("service")
def start_one(service: str) -> None:
    """Start one stopped service and wait until it is healthy (a broker rejoins its cluster)."""
    settings = stack_settings()
    svc = services.service(settings, service)
    seconds = services.start(settings, svc, timeout_s=settings.stack_start_timeout_s)
    host, port = svc.host_port(settings)
    click.echo(f"{svc.name} healthy at {host}:{port}  ({seconds:.1f}s)")


@stack.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(as_json: bool) -> None:
    """Show each service, its pid, address, memory and health. Exit 1 unless all are healthy."""
    rows = services.status(stack_settings())
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
@click.argument("service")
@click.option("-n", "--lines", default=50, show_default=True, help="How many lines from the end.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C to stop).")
def logs(service: str, lines: int, follow: bool) -> None:
    """Show a service's log (broker or broker-N, registry, warehouse, prometheus)."""
    settings = stack_settings()
    service = services.service(settings, service).name
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
