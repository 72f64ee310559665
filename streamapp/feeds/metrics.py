"""Prometheus metrics of the feed handlers (default registry, served on ``feed_metrics_port``)."""

from prometheus_client import Counter, Gauge, Histogram

FRAMES_RECEIVED = Counter("streamapp_feed_frames_received", "Frames received, by kind.", ["exchange", "kind"])
FRAMES_PUBLISHED = Counter(
    "streamapp_feed_frames_published", "Records delivered to the raw topic (kind: trade or backfill).",
    ["exchange", "kind"])
DUPLICATES = Counter("streamapp_feed_duplicate_frames", "Trade frames dropped as already seen (overlaps).", ["exchange"])
RECONNECTS = Counter("streamapp_feed_reconnects", "Connections re-opened, by reason.", ["exchange", "reason"])
CONNECTIONS = Gauge("streamapp_feed_connections", "Open exchange connections.", ["exchange"])
GAPS = Counter("streamapp_feed_gaps", "Gaps in trade ids detected.", ["exchange"])
GAP_TRADES = Counter("streamapp_feed_gap_trades", "Trade ids missing in detected gaps.", ["exchange"])
BACKFILLED = Counter("streamapp_feed_backfilled_trades", "Trades fetched from REST to fill gaps.", ["exchange"])
BACKFILL_ERRORS = Counter("streamapp_feed_backfill_errors", "Backfill requests that failed.", ["exchange"])
BACKFILL_EMPTY_PAGES = Counter(
    "streamapp_feed_backfill_empty_pages", "Backfill pages with no trade of the range asked for (asked again).",
    ["exchange"])
BACKFILL_FAILED_RANGES = Counter(
    "streamapp_feed_backfill_failed_ranges", "Gaps (or their rest) given up: no REST page held them after retries.",
    ["exchange"])
BACKFILL_FAILED_TRADES = Counter(
    "streamapp_feed_backfill_failed_trades", "Trade ids in the gaps given up (streamapp_feed_backfill_failed_ranges).",
    ["exchange"])
DROPPED = Counter("streamapp_feed_dropped",
                  "Records not published, by reason (buffer_full, refused, delivery_error); each becomes a gap.",
                  ["exchange", "reason"])
RESUMED = Gauge("streamapp_feed_resumed_symbols", "Symbols whose last published trade id was found on the raw topic "
                "at start.", ["exchange"])
PUBLISH_LATENCY = Histogram(
    "streamapp_feed_publish_latency_seconds", "Receive to broker acknowledgement.", ["exchange"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
BUFFER_DEPTH = Gauge("streamapp_feed_buffer_depth", "Records waiting in the producer's local buffer.", ["exchange"])
