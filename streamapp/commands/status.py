"""``streamapp status``: broker, topics, consumer lag, registry, warehouse and freshness on one screen."""

from __future__ import annotations

import json

import click
from rich.console import Console

from streamapp.operate import status as ops
from streamapp.settings import get_settings


@click.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--window", default="1h", show_default=True,
              help="Freshness over trades ingested in this window (90s, 15m, 1h, 7d) or all.")
def status(fmt: str, window: str) -> None:
    """The whole platform at a glance. Exit 1 if any service is unreachable (for scripts)."""
    report = ops.collect(get_settings(), ops.parse_window(window))
    if fmt == "json":
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        console = Console()
        if not console.is_terminal:
            console = Console(width=160)
        ops.render(report, console)
    if not report["healthy"]:
        raise SystemExit(1)
