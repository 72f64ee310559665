"""``streamapp worker``: the Faust normalizer worker."""

from __future__ import annotations

import logging

import click

from streamapp.settings import get_settings


@click.command()
@click.option("-l", "--loglevel", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]), help="Worker log level.")
def worker(loglevel: str) -> None:
    """Run the normalizer: raw topics -> validated Avro Trades on the normalized topics,
    rejects to the DLQ. Start more workers (same settings) to share the partitions.

    Web port: STREAMAPP_WORKER_WEB_PORT; metrics: STREAMAPP_WORKER_METRICS_PORT.
    Same as `faust -A streamapp.app worker`.
    """
    from faust import Worker

    from streamapp import topics
    from streamapp.app import app
    from streamapp.clients.kafka import ensure_topics

    settings = get_settings()
    if loglevel != "debug":
        # aiokafka builds a debug record for every message sent; keep it off the hot path.
        logging.getLogger("aiokafka").setLevel(logging.INFO)
    ensure_topics(settings, topics.PIPELINE_TOPICS)
    app.discover()  # imports the app's agent modules (its autodiscover list), which register the agents
    Worker(app, loglevel=loglevel.upper()).execute_from_commandline()
