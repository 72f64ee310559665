"""``streamapp``: one command, a sub-command per job. It parses arguments and calls functions."""

from __future__ import annotations

import logging
import sys

import click

from streamapp.commands import db, exchange, feed, pipeline, stack, worker
from streamapp.commands import replay
from streamapp.commands import status
from streamapp.commands import tables
from streamapp.commands import coldtier
from streamapp.errors import StreamappError


class _Group(click.Group):
    """Turns :class:`StreamappError` into one clear line and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except StreamappError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def cli(verbose: bool) -> None:
    """streamapp: live exchange trades turned into candles you can query.

    Settings come from STREAMAPP_* environment variables (see README,
    "Settings"); defaults point at the local stack on 127.0.0.1.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Client libraries log every request at INFO; that is noise on an operator's screen.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # They log a traceback before raising; our error message already says what failed.
    for noisy in ("clickhouse_connect", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


cli.add_command(stack.stack)

cli.add_command(feed.feed)
cli.add_command(exchange.exchange)
cli.add_command(worker.worker)
cli.add_command(db.db)
cli.add_command(pipeline.pipeline_group)
cli.add_command(replay.replay)
cli.add_command(status.status)
cli.add_command(tables.tables)
cli.add_command(coldtier.offload)
cli.add_command(coldtier.iceberg)
cli.add_command(coldtier.verify)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
