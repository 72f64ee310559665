"""``streamapp stack``: the local stack (broker, schema registry, warehouse) on loopback."""

import click


@click.group()
def stack() -> None:
    """Start, stop and inspect the local stack (Kafka, schema registry, embedded ClickHouse)."""
