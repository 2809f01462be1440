"""The numbers staff read at a glance: run statistics, readings over time, health and lag per
integration.

Plain functions over the activity log, the integrations and the readings; the admin index
(through the `gsync_dashboard` template tag) and the integrations pages only render what they
return. Readings are counted by their own time (integrations.admin.history) over the range staff
choose (6 h, 24 h, 7 d), one bucketed query for the chart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Avg, Count, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince

from integrations.admin.charts import Chart, Column, Series, stacked_bars
from integrations.admin.history import Buckets, readings_by_time
from integrations.admin.lag import Lag, annotate_lag, lag_of
from integrations.due import Due, Hold, due
from integrations.models import ActivityLog, DeviceIntegration, Heartbeat
from integrations.pull.completeness import verification_warning
from integrations.pull.retention import retention_warnings
from integrations.scheduling import DISPATCH_BEAT
from integrations.sync_settings import SyncSettings

Activity = ActivityLog.ActivityType
Status = ActivityLog.Status
DAY = timedelta(hours=24)
RUN_TYPES = (Activity.SYNC_IMPORT, Activity.BACKFILL)
FINISHED = (Status.SUCCESS, Status.PARTIAL, Status.FAILED)
# Which activity stored readings by which path; the changelist's readings column uses these.
SOURCES = {
    "push": (Activity.WEBHOOK_RECEIVED, Activity.WEBHOOK_REPROCESSED),
    "pull": (Activity.SYNC_IMPORT,),
    "backfill": (Activity.BACKFILL,),
}
# A run is "late" once it is this far past its due time: two dispatch periods of slack.
LATE_AFTER = timedelta(minutes=2)


# --- runs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStats:
    runs: int
    succeeded: int
    partial: int
    failed: int
    avg_ms: float | None
    p95_ms: int | None

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.runs if self.runs else None


def run_stats(*, now: datetime, period: timedelta = DAY) -> RunStats:
    """Finished pull and backfill runs started in `period`: what `cron.job_run_details` gave."""
    runs = ActivityLog.objects.filter(
        activity_type__in=RUN_TYPES, status__in=FINISHED, started_at__gte=now - period
    )
    totals = runs.aggregate(
        runs=Count("id"),
        succeeded=Count("id", filter=Q(status=Status.SUCCESS)),
        partial=Count("id", filter=Q(status=Status.PARTIAL)),
        failed=Count("id", filter=Q(status=Status.FAILED)),
        avg_ms=Avg("response_time_ms"),
        timed=Count("response_time_ms"),
    )
    return RunStats(
        runs=totals["runs"],
        succeeded=totals["succeeded"],
        partial=totals["partial"],
        failed=totals["failed"],
        avg_ms=totals["avg_ms"],
        p95_ms=_p95(runs, timed=totals["timed"]),
    )


def _p95(runs, *, timed: int) -> int | None:
    # Nearest-rank percentile with one indexed OFFSET query: no PERCENTILE_CONT, so the same code
    # answers on SQLite and PostgreSQL.
    if not timed:
        return None
    rank = math.ceil(0.95 * timed) - 1
    durations = runs.exclude(response_time_ms=None).order_by("response_time_ms")
    return durations.values_list("response_time_ms", flat=True)[rank]


# --- health per integration ----------------------------------------------------------------------


class HealthState:
    OK = "ok"
    LATE = "late"
    FAILING = "failing"
    PAUSED = "paused"
    OUTSIDE_WINDOW = "outside window"
    RUNNING = "running"
    WARNING = "warning"


@dataclass(frozen=True)
class Health:
    state: str
    reason: str


def integration_health(integration: DeviceIntegration, *, now: datetime) -> Health:
    """One word and why: the rules staff would apply reading the integration's fields. Whether
    it runs, and when next, is `integrations.due.due`'s answer."""
    decision = due(integration, now=now)
    hold = decision.hold
    if hold == Hold.INVALID:
        return Health(HealthState.FAILING, decision.reason[:1].upper() + decision.reason[1:])
    if hold == Hold.PAUSED:
        return Health(HealthState.PAUSED, "Paused by staff.")
    if hold == Hold.DISABLED:
        return Health(HealthState.PAUSED, "Scheduled sync is turned off in its settings.")
    if hold == Hold.STOPPED:
        return Health(HealthState.FAILING, _failure_reason(integration, stopped=True))
    if integration.last_sync_status == Status.FAILED or integration.consecutive_failures:
        return Health(HealthState.FAILING, _failure_reason(integration, stopped=False))
    settings = integration.sync_settings
    if hold == Hold.OUTSIDE_WINDOW and settings.time_window:
        text = f"Syncs only {settings.time_window.describe()}; next run: {decision.describe()}."
        return Health(HealthState.OUTSIDE_WINDOW, text)
    if hold == Hold.RUNNING:
        return Health(HealthState.RUNNING, "A sync is running now.")
    if late := _late_reason(integration, settings, decision, now=now):
        return Health(HealthState.LATE, late)
    if past_retention := retention_warnings(integration, now=now):
        return Health(HealthState.WARNING, " ".join(past_retention))
    if unverified := verification_warning(integration, settings, now=now):
        return Health(HealthState.WARNING, unverified)
    if integration.last_sync_at is None:
        return Health(HealthState.OK, "Waiting for its first run.")
    return Health(HealthState.OK, f"Last run {timesince(integration.last_sync_at, now)} ago.")


def _late_reason(
    integration: DeviceIntegration, settings: SyncSettings, decision: Due, *, now: datetime
) -> str:
    """Why it is late, or "" when it is not: due more than LATE_AFTER ago, with its time window
    open at least that long (a window that just opened is not a missed run)."""
    since = decision.since
    if not decision.runs or since is None or now - since <= LATE_AFTER:
        return ""
    if not settings.in_window(now - LATE_AFTER):
        return ""
    last = (
        f"last run {timesince(integration.last_sync_at, now)} ago"
        if integration.last_sync_at
        else "never run"
    )
    return (
        f"Due {timesince(since, now)} ago ({last}; interval {settings.sync_interval_seconds} s). "
        "Is a qcluster worker running?"
    )


def _failure_reason(integration: DeviceIntegration, *, stopped: bool) -> str:
    error = integration.sync_error.strip().splitlines()[0] if integration.sync_error else ""
    runs = integration.consecutive_failures
    prefix = "Stopped after " if stopped else ""
    count = f"{prefix}{runs} failed run{'s' if runs != 1 else ''} in a row" if runs else "Failed"
    return f"{count}: {error}" if error else f"{count}."


# --- readings over time --------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    key: str
    label: str
    words: str
    bucket: timedelta
    buckets: int
    label_format: str
    label_every: int


RANGES = {
    r.key: r
    for r in [
        Range("6h", "6 h", "6 hours", timedelta(minutes=15), 24, "%H:%M", 4),
        Range("24h", "24 h", "24 hours", timedelta(hours=1), 24, "%H:00", 3),
        Range("7d", "7 d", "7 days", timedelta(hours=6), 28, "%a %d", 4),
    ]
}
DEFAULT_RANGE = "24h"
# One colour per integration, in name order (cycled past eight).
PALETTE = ["#417690", "#e0b84f", "#79aec8", "#8e5ea2", "#3cba9f", "#c45850", "#5f7d28", "#d17b0f"]


def readings_chart(*, now: datetime, chosen: Range, integrations: list[DeviceIntegration]) -> Chart:
    """Readings per bucket by reading time, stacked by integration."""
    buckets = Buckets(size=chosen.bucket, count=chosen.buckets, now=now)
    counts = readings_by_time(buckets, integration_ids=[i.pk for i in integrations])
    series = [Series(i.pk, i.name, PALETTE[n % len(PALETTE)]) for n, i in enumerate(integrations)]
    columns = [
        Column(start, {s.key: counts.get((int(s.key), start), 0) for s in series})
        for start in buckets.starts
    ]
    total = sum(counts.values())
    tz = timezone.get_current_timezone()
    return stacked_bars(
        columns,
        series,
        summary=f"{total:,} readings stored in the last {chosen.words}, counted by reading time",
        label=lambda start: f"{timezone.localtime(start, tz):{chosen.label_format}}",
        label_every=chosen.label_every,
        width=1000,
    )


# --- the admin index -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    label: str
    value: str
    note: str = ""


@dataclass(frozen=True)
class Row:
    """One integration on the dashboard: its health and lag, linked to its page."""

    integration: DeviceIntegration
    url: str
    health: Health
    lag: Lag


@dataclass(frozen=True)
class Dashboard:
    tiles: list[Tile]
    chart: Chart
    health: list[tuple[str, int]]
    rows: list[Row]
    scheduler: str
    range: Range
    ranges: list[Range]
    range_error: str = ""

    @property
    def attention(self) -> list[Row]:
        """The integrations not "ok", failing first: named and linked, not just counted."""
        order = {HealthState.FAILING: 0, HealthState.LATE: 1, HealthState.WARNING: 2}
        unwell = [r for r in self.rows if r.health.state != HealthState.OK]
        return sorted(unwell, key=lambda r: order.get(r.health.state, 3))


def dashboard_summary(*, now: datetime, range_key: str | None = None) -> Dashboard:
    """Everything the admin index shows, as display-ready values. `range_key` is the chart's
    range as the page's `?range=` gives it; an unknown one shows the default and says so."""
    chosen = RANGES.get(range_key or DEFAULT_RANGE, RANGES[DEFAULT_RANGE])
    error = "" if not range_key or range_key in RANGES else (
        f"Unknown range “{range_key[:20]}”: showing {chosen.label}. "
        f"Choose one of {', '.join(RANGES)}."
    )  # fmt: skip
    runs = run_stats(now=now)
    rate = f"{runs.success_rate:.0%}" if runs.success_rate is not None else "–"
    tiles = [
        Tile("Runs, last 24 h", f"{runs.runs:,}", f"{runs.failed} failed, {runs.partial} partial"),
        Tile("Success rate", rate, "runs that finished without an error"),
        Tile("Average duration", _seconds(runs.avg_ms), "per run"),
        Tile("p95 duration", _seconds(runs.p95_ms), "95% of runs took at most this"),
    ]
    integrations = list(annotate_lag(DeviceIntegration.objects.all(), now=now))
    rows = [
        Row(
            integration=i,
            url=reverse("admin:integrations_deviceintegration_change", args=[i.pk]),
            health=integration_health(i, now=now),
            lag=lag_of(i, now=now),
        )
        for i in integrations
    ]
    states: dict[str, int] = {}
    for row in rows:
        states[row.health.state] = states.get(row.health.state, 0) + 1
    return Dashboard(
        tiles=tiles,
        chart=readings_chart(now=now, chosen=chosen, integrations=integrations),
        health=sorted(states.items()),
        rows=rows,
        scheduler=_scheduler_line(now=now),
        range=chosen,
        ranges=list(RANGES.values()),
        range_error=error,
    )


def _seconds(ms: float | None) -> str:
    if ms is None:
        return "–"
    return f"{ms / 1000:.1f} s" if ms < 60_000 else f"{ms / 60_000:.1f} min"


def _scheduler_line(*, now: datetime) -> str:
    beat = Heartbeat.objects.filter(name=DISPATCH_BEAT).values_list("beat_at", flat=True).first()
    if beat is None:
        return "The scheduler has never dispatched: is a worker (manage.py qcluster) running?"
    return f"Scheduler last dispatched {timesince(beat, now)} ago."
