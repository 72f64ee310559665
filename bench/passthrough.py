"""Pass-through Faust apps for ``make bench``: raw records forwarded byte for byte, the framework's own ceiling.

Same Faust settings as the worker (``streamapp.app.configure``: exactly-once,
commit interval, linger), their own consumer group, no normalization:

* ``batch``: :class:`streamapp.eos.App`, the agent forwards each fetched batch
  (``eos.process_batches``) through the source partitions' transactions, as the
  worker does. What the worker could reach with free normalization.
* ``stream``: a stock ``faust.App`` whose agent iterates its stream and sends each
  event (``async for event in stream.events(): await topic.send(...)``), Faust's
  usual per-event path. What Faust's own per-event machinery costs.

    python bench/passthrough.py batch|stream TARGET_TOPIC worker -l warning
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import faust  # noqa: E402

from streamapp import eos, topics  # noqa: E402
from streamapp.app import configure  # noqa: E402
from streamapp.dispatch import Outgoing  # noqa: E402
from streamapp.exchanges import BINANCE  # noqa: E402
from streamapp.settings import get_settings  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from throughput import PASSTHROUGH_GROUP as GROUP  # noqa: E402  (the bench times these groups)
_RAW_BYTES = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


def build(mode: str, target: str) -> faust.App:
    app = (eos.App if mode == "batch" else faust.App)(GROUP[mode], origin="passthrough")

    @app.on_configured.connect
    def _configure(app: faust.App, conf: Any, **kwargs: Any) -> None:
        configure(conf)
        conf.datadir = str(get_settings().home / f"bench-{mode}")

    source = app.topic(topics.raw(BINANCE), **_RAW_BYTES)
    out = app.topic(target, **_RAW_BYTES)

    if mode == "batch":
        @app.agent(source, name="forward")
        async def forward_batches(stream: Any) -> None:
            await eos.process_batches(stream, lambda records: [
                Outgoing(target, r.key, r.value, list(r.headers)) for r in records
            ])
    else:
        @app.agent(source, name="forward")
        async def forward_events(stream: Any) -> None:
            async for event in stream.events():
                await out.send(key=event.key, value=event.value, headers=event.headers)
    return app


if __name__ == "__main__":
    import logging

    logging.getLogger("aiokafka").setLevel(logging.INFO)  # as `streamapp worker` does
    mode, target = sys.argv[1], sys.argv[2]
    if mode not in GROUP:
        raise SystemExit(f"mode must be one of {', '.join(GROUP)}, not {mode!r}")
    del sys.argv[1:3]
    build(mode, target).main()
