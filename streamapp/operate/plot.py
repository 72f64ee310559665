"""``streamapp tables candles --plot FILE.png``: a candlestick chart with volume bars.

Plain matplotlib on the Agg backend (no display, no finance add-ons): a wick per candle
from low to high, a body from open to close (green up, red down), volume below.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from streamapp.errors import StreamappError

if TYPE_CHECKING:
    from streamapp.operate.tables import Result

INTERVAL_SECONDS = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "1d": 86400}
UP, DOWN = "#26a69a", "#ef5350"


def plot_candles(result: Result, path: Path, *, title: str, interval: str) -> int:
    """Write ``result``'s candles (window_start, open, high, low, close, volume) to a PNG at ``path``.

    Returns the number of candle bodies matplotlib drew (one per row).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise StreamappError(
            "--plot needs matplotlib, an optional dependency: pip install 'streamapp[plot]'"
        ) from exc
    if not result.rows:
        raise StreamappError("nothing to plot: no candles in the range")
    if interval not in INTERVAL_SECONDS:
        raise StreamappError(f"unknown interval {interval!r}: choose one of {', '.join(INTERVAL_SECONDS)}")
    idx = {c: i for i, c in enumerate(result.columns)}
    days = INTERVAL_SECONDS[interval] / 86400
    # A candle is drawn over its window (centred), not at its start.
    times = [mdates.date2num(_utc(r[idx["window_start"]])) + days / 2 for r in result.rows]
    o, h, lo, c, v = ([float(r[idx[k]]) for r in result.rows] for k in ("open", "high", "low", "close", "volume"))
    colors = [UP if close >= open_ else DOWN for open_, close in zip(o, c)]
    # A flat candle (open == close) still gets a visible body: a thousandth of the price range.
    min_body = (max(h) - min(lo)) * 1e-3 or abs(max(h)) * 1e-6 or 1e-9
    bottoms = [min(a, b) for a, b in zip(o, c)]
    heights = [max(abs(b - a), min_body) for a, b in zip(o, c)]

    fig, (price, volume) = plt.subplots(2, 1, sharex=True, figsize=(12, 7), gridspec_kw={"height_ratios": [3, 1]})
    try:
        price.vlines(times, lo, h, colors=colors, linewidth=1)
        bodies = price.bar(times, heights, days * 0.7, bottom=bottoms, color=colors, align="center")
        price.set_title(title)
        price.set_ylabel("price")
        price.grid(alpha=0.3)
        volume.bar(times, v, days * 0.7, color=colors, align="center")
        volume.set_ylabel("volume")
        volume.grid(alpha=0.3)
        locator = mdates.AutoDateLocator(minticks=3, maxticks=10)
        volume.xaxis.set_major_locator(locator)
        volume.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, format="png")
    except OSError as exc:
        raise StreamappError(f"cannot write the chart to {path}: {exc.strerror or exc}") from exc
    finally:
        plt.close(fig)
    return len(bodies.patches)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
