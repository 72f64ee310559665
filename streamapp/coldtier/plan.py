"""Which hours to offload (pure: statistics in, decisions out; no I/O).

Hours are hours of **trade time** (of the Kafka record timestamp for the raw layer), because the
cold tier is partitioned and queried by when trades happened. The hot tier's TTL, though, counts
from **ingest time** (when ClickHouse read the trade), so a replay of 2021 trades today lands in
2021's hours and stays in the hot tier for ``hot_retention_days`` from today. Hence, per hour:

- *closed*: the hour ended ``grace`` ago **and** its newest row was ingested ``grace`` ago (an
  old hour still receiving a replay is not closed yet);
- *done*: the watermark (the offload log) holds the hour with at least the rows and the newest
  ingest time the hot tier has now; late trades into an offloaded hour make it due again;
- *expired*: its oldest row was ingested more than the retention ago, so the TTL may already have
  deleted part of it: offloading it would replace complete cold rows by a partial hour, so it is
  never offloaded (``streamapp status`` warns before this happens to an hour not yet offloaded).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class HourStat:
    """What one source holds for one hour."""

    hour: datetime
    rows: int
    min_ingest: datetime | None = None  # None for the raw layer: the hour itself is its ingest time
    max_ingest: datetime | None = None


@dataclass(frozen=True)
class Done:
    """The watermark's entry for an hour: what the last offload of it wrote."""

    hour: datetime
    rows: int
    max_ingest: datetime | None


@dataclass(frozen=True)
class Plan:
    due: list[HourStat]
    open: list[HourStat]
    done: list[HourStat]
    expired: list[HourStat]  # not offloaded (or changed since) and possibly partly deleted already


def hour_of(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def plan(stats: list[HourStat], done: dict[datetime, Done], *, now: datetime, grace: timedelta,
         retention: timedelta) -> Plan:
    """Sort every hour the hot tier holds into due, open, done or expired (oldest first)."""
    result = Plan([], [], [], [])
    for stat in sorted(stats, key=lambda s: s.hour):
        entry = done.get(stat.hour)
        if entry is not None and not _changed(stat, entry):
            result.done.append(stat)
        elif stat.hour + HOUR + grace > now or (stat.max_ingest is not None and stat.max_ingest + grace > now):
            result.open.append(stat)
        elif (stat.min_ingest or stat.hour) + retention <= now:
            result.expired.append(stat)
        else:
            result.due.append(stat)
    return result


def _changed(stat: HourStat, entry: Done) -> bool:
    if stat.rows > entry.rows:
        return True
    return stat.max_ingest is not None and (entry.max_ingest is None or stat.max_ingest > entry.max_ingest)


def at_risk(plan_: Plan, *, now: datetime, retention: timedelta, horizon: timedelta) -> list[tuple[HourStat, datetime]]:
    """Hours not offloaded whose oldest rows the TTL deletes within ``horizon`` (with that time)."""
    risky = []
    for stat in plan_.due + plan_.open + plan_.expired:
        deleted_at = (stat.min_ingest or stat.hour) + retention
        if deleted_at <= now + horizon:
            risky.append((stat, deleted_at))
    return risky


def lag(plan_: Plan, now: datetime) -> timedelta | None:
    """How far the cold tier is behind: the age of the oldest hour that is closed but not offloaded."""
    pending = plan_.due + plan_.expired
    if not pending:
        return timedelta(0)
    return now - (pending[0].hour + HOUR)


def gold_range(hour: datetime, interval: timedelta, epoch: datetime) -> tuple[datetime, datetime]:
    """The window starts whose candles an offload of trade hour ``hour`` rewrites.

    Candles of an hour or less: every window starting in the hour. Longer ones (1d): the one
    window containing the hour, rewritten with its current value each time one of its hours is
    offloaded, so it is final once its last hour is.
    """
    if interval <= HOUR:
        return hour, hour + HOUR
    start = epoch + ((hour - epoch) // interval) * interval
    return start, start + interval
