"""The cold tier in ``streamapp status``: offload lag, and hours the hot tier's TTL deletes before they are offloaded."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from streamapp.clients.clickhouse import connect, root_cause
from streamapp.coldtier import catalog
from streamapp.coldtier.offload import trade_plan
from streamapp.coldtier.plan import at_risk, lag
from streamapp.settings import Settings

WARN_HORIZON = timedelta(days=1)


def report(settings: Settings, now: datetime | None = None) -> dict:
    """Plain data: catalog, hours done/due/open/expired, lag (s), hours at risk within a day (trade layers)."""
    now = now or datetime.now(timezone.utc)
    out: dict = {"catalog": catalog.catalog_uri(settings)}
    try:
        client = connect(settings, send_receive_timeout=30)
        cat = catalog.open_catalog(settings) if catalog.exists(settings) else None  # status creates nothing
        plan_, _ = trade_plan(client, cat, settings, now)
    except Exception as exc:  # noqa: BLE001 - status reports a part it cannot read, in one line
        return out | {"error": f"cannot read the offload state: {root_cause(exc)}"}
    behind = lag(plan_, now)
    risky = at_risk(plan_, now=now, retention=timedelta(days=settings.hot_retention_days), horizon=WARN_HORIZON)
    return out | {
        "hours_offloaded": len(plan_.done), "hours_due": len(plan_.due), "hours_open": len(plan_.open),
        "hours_expired": len(plan_.expired), "lag_s": None if behind is None else behind.total_seconds(),
        "at_risk": [{"hour": s.hour.isoformat(), "deleted_from": when.isoformat()} for s, when in risky],
    }
