"""The whole pipeline on the local stack: feeds (live, or the simulator replaying captures) and the worker.

``streamapp pipeline up`` brings up the stack, applies migrations, creates the
topics, and runs the pipeline's processes in the background the way the stack
runs its services (pid and log files under ``$STREAMAPP_HOME``).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from streamapp import migrations, package_data, topics
from streamapp.exchanges import BINANCE, BINANCEUSDM, EXCHANGES, KRAKEN
from streamapp.clients.clickhouse import connect
from streamapp.clients.kafka import ensure_topics
from streamapp.settings import Settings
from streamapp.stack import services
from streamapp.stack.services import Service, http_ok, streamapp_command

# The packaged captures (streamapp/captures/): spot trades for "binance", USDⓈ-M futures
# trades for "binanceusdm" (same window, other market), the Kraken v2 capture converted
# from real v1 trades. Their symbols are what the feeds subscribe to; the simulator serves
# each capture as the exchange its lines name.
SIMULATED = {
    BINANCE: ("binance_spot_btcusdt_trades_2024-08-08.jsonl.gz", ("BTCUSDT",)),
    BINANCEUSDM: ("binance_usdm_btcusdt_trades_2024-08-08.jsonl.gz", ("BTCUSDT",)),
    KRAKEN: ("kraken_v2_trades_converted_from_v1_2021-04.jsonl.gz",
             ("ALGO/BTC", "BTC/USD", "DASH/EUR", "SC/EUR", "XMR/USD")),
}
LIVE_SYMBOLS = {BINANCE: ("BTCUSDT", "ETHUSDT"), BINANCEUSDM: ("BTCUSDT", "ETHUSDT"), KRAKEN: ("BTC/USD", "ETH/USD")}
# Per exchange: the simulator's WebSocket path, and the setting (and its variable) of the feed's metrics port.
SIMULATOR_PATHS = {BINANCE: "/stream", BINANCEUSDM: "/fstream/stream", KRAKEN: "/v2"}
METRICS_PORTS = {
    BINANCE: ("feed_metrics_port", "STREAMAPP_FEED_METRICS_PORT"),
    BINANCEUSDM: ("binanceusdm_feed_metrics_port", "STREAMAPP_BINANCEUSDM_FEED_METRICS_PORT"),
    KRAKEN: ("kraken_feed_metrics_port", "STREAMAPP_KRAKEN_FEED_METRICS_PORT"),
}
PROBE = ("stream.binance.com", 9443)


def exchanges_reachable(timeout_s: float = 3.0) -> tuple[bool, str]:
    """Whether the real exchanges answer here, and why not."""
    try:
        with socket.create_connection(PROBE, timeout=timeout_s):
            return True, ""
    except OSError as exc:
        return False, f"{PROBE[0]}:{PROBE[1]}: {exc.strerror or exc}"


def _metrics_ok(port_of: Callable[[Settings], int]) -> Callable[[Settings], bool]:
    return lambda s: http_ok(f"http://{s.metrics_host}:{port_of(s)}/metrics")


def feed(exchange: str, live: bool) -> Service:
    field, variable = METRICS_PORTS[exchange]

    def port_of(settings: Settings) -> int:
        return getattr(settings, field)

    def command(settings: Settings) -> list[str]:
        args = ["feed", "run", "--exchange", exchange, "--metrics-port", str(port_of(settings))]
        if live:
            return streamapp_command(*args, "--symbols", ",".join(LIVE_SYMBOLS[exchange]))
        base = f"ws://127.0.0.1:{settings.simulator_port}"
        return streamapp_command(*args, "--symbols", ",".join(SIMULATED[exchange][1]),
                                 "--url", f"{base}{SIMULATOR_PATHS[exchange]}",
                                 "--rest-url", f"http://127.0.0.1:{settings.simulator_port}")

    return Service(
        name=f"feed-{exchange}", describe=f"{exchange} feed handler",
        host_port=lambda s: (s.metrics_host, port_of(s)), command=command, healthy=_metrics_ok(port_of),
        port_setting=variable, scrape=("streamapp-feed", {"component": "feed", "exchange": exchange}),
    )


FLEET_MAX = 9  # workers `pipeline up --workers N` starts at most


def worker(k: int) -> Service:
    """The ``k``-th normalizer worker: ``worker``, then ``worker-2`` …, all in one consumer group.

    Worker k serves Faust's web port at STREAMAPP_WORKER_WEB_PORT + k - 1 and its
    metrics at STREAMAPP_WORKER_METRICS_PORT + 10 (k - 1).
    """
    web = lambda s: s.worker_web_port + k - 1  # noqa: E731
    metrics = lambda s: s.worker_metrics_port + 10 * (k - 1)  # noqa: E731
    return Service(
        name="worker" if k == 1 else f"worker-{k}", describe="normalizer (Faust worker)",
        host_port=lambda s: (s.metrics_host, metrics(s)),
        command=lambda s: streamapp_command("worker"), healthy=_metrics_ok(metrics),
        port_setting="STREAMAPP_WORKER_METRICS_PORT",
        env=lambda s: {"STREAMAPP_WORKER_WEB_PORT": str(web(s)), "STREAMAPP_WORKER_METRICS_PORT": str(metrics(s))},
        scrape=("streamapp-worker", {"component": "normalizer"}),
    )


WORKER = worker(1)
FLEET = tuple(worker(k) for k in range(1, FLEET_MAX + 1))

SIMULATOR = Service(
    name="simulator", describe="exchange simulator replaying streamapp/captures/",
    host_port=lambda s: ("127.0.0.1", s.simulator_port),
    command=lambda s: streamapp_command(
        "exchange", "serve", "--speed", "max", "--port", str(s.simulator_port),
        *(arg for capture, _ in SIMULATED.values()
          for arg in ("--capture", str(package_data.path("captures", capture))))),
    healthy=lambda s: http_ok(f"http://127.0.0.1:{s.simulator_port}/health"),
    port_setting="STREAMAPP_SIMULATOR_PORT", scrape=("streamapp-simulator", {"component": "simulator"}),
)


def processes(live: bool, workers: int = 1) -> tuple[Service, ...]:
    """Start order: consumers first, so nothing the feeds publish waits long."""
    feeds = tuple(feed(exchange, live) for exchange in EXCHANGES)
    fleet = FLEET[:workers]
    return (*fleet, *feeds) if live else (*fleet, SIMULATOR, *feeds)


ALL = (*FLEET, SIMULATOR, *(feed(exchange, False) for exchange in EXCHANGES))


def prepare(settings: Settings) -> list[str]:
    """Stack up, migrations applied (tables in line with the settings), topics created.
    Returns the migrations applied now."""
    services.up(settings)
    steps = migrations.migrate(connect(settings), settings)
    applied = [step.subject for step in steps if step.kind == "applied"]
    ensure_topics(settings, topics.PIPELINE_TOPICS)
    return applied
