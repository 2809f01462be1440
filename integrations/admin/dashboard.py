"""The numbers staff read at a glance: run statistics, readings per hour, health per integration.

Plain functions over the activity log and the integrations table; the admin index (through the
`gsync_dashboard` template tag) and the integrations changelist only render what they return.
Readings are counted from the activity log (what each run or delivery inserted), whose indexes
lead with the start time, so the dashboard costs the same with 5 or 500 million readings stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone
from django.utils.timesince import timesince

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
# Which activity stored readings by which path; the chart and the changelist columns use these.
SOURCES = {
    "push": (Activity.WEBHOOK_RECEIVED, Activity.WEBHOOK_REPROCESSED),
    "pull": (Activity.SYNC_IMPORT,),
    "backfill": (Activity.BACKFILL,),
}
SOURCE_LABELS = {"push": "Push (webhook)", "pull": "Pull (sync)", "backfill": "Backfill"}
SOURCE_COLOURS = {"push": "#417690", "pull": "#79aec8", "backfill": "#e0b84f"}
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


# --- readings per hour ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HourCounts:
    start: datetime
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def readings_per_hour(*, now: datetime, hours: int = 24) -> list[HourCounts]:
    """Readings stored per hour and source, oldest hour first, the current (partial) hour last."""
    tz = timezone.get_current_timezone()
    current = timezone.localtime(now, tz).replace(minute=0, second=0, microsecond=0)
    starts = [current - timedelta(hours=n) for n in range(hours - 1, -1, -1)]
    rows = (
        ActivityLog.objects.filter(
            activity_type__in=[t for types in SOURCES.values() for t in types],
            started_at__gte=starts[0],
        )
        .annotate(hour=TruncHour("started_at", tzinfo=tz))
        .values("hour", "activity_type")
        .annotate(inserted=Sum("readings_inserted"))
    )
    source_of = {t: source for source, types in SOURCES.items() for t in types}
    table = {start: dict.fromkeys(SOURCES, 0) for start in starts}
    for row in rows:
        bucket = table.get(timezone.localtime(row["hour"], tz))
        if bucket is not None:
            bucket[source_of[row["activity_type"]]] += row["inserted"] or 0
    return [HourCounts(start=start, counts=table[start]) for start in starts]


# --- the chart -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    plot_top: int
    plot_bottom: int
    bars: list[Bar]
    y_ticks: list[tuple[float, str]]
    x_labels: list[tuple[float, str]]
    legend: list[tuple[str, str]]
    total: int
    peak: int
    summary: str = field(default="")


CHART_LEFT, CHART_RIGHT, CHART_TOP, CHART_BOTTOM_MARGIN = 48, 8, 10, 24


def readings_chart(hours: list[HourCounts], *, width: int = 720, height: int = 200) -> Chart:
    """Stacked bars, one per hour, geometry computed here so the template only draws it."""
    top, bottom = CHART_TOP, height - CHART_BOTTOM_MARGIN
    peak = max((h.total for h in hours), default=0)
    step = _tick_step(peak)
    slot = (width - CHART_LEFT - CHART_RIGHT) / max(len(hours), 1)
    pixels_per_reading = (bottom - top) / (4 * step)
    bars = [
        bar
        for i, hour in enumerate(hours)
        for bar in _stack(hour, x=CHART_LEFT + i * slot, slot=slot, bottom=bottom,
                          pixels_per_reading=pixels_per_reading)
    ]  # fmt: skip
    total = sum(h.total for h in hours)
    return Chart(
        width=width,
        height=height,
        plot_top=top,
        plot_bottom=bottom,
        bars=bars,
        y_ticks=[(round(bottom - (bottom - top) * k / 4, 2), f"{step * k:,}") for k in range(5)],
        x_labels=[
            (round(CHART_LEFT + i * slot + slot / 2, 2), f"{hour.start:%H:00}")
            for i, hour in enumerate(hours)
            if i % 3 == 0
        ],
        legend=[(SOURCE_COLOURS[s], SOURCE_LABELS[s]) for s in SOURCES],
        total=total,
        peak=peak,
        summary=f"{total:,} readings stored in the last {len(hours)} hours, at most {peak:,} in "
        "one hour",
    )


def _stack(
    hour: HourCounts, *, x: float, slot: float, bottom: float, pixels_per_reading: float
) -> list[Bar]:
    """One hour's bars, each source on top of the previous one."""
    bars, y = [], bottom
    for source, count in hour.counts.items():
        if not count:
            continue
        height = count * pixels_per_reading
        y -= height
        bars.append(
            Bar(
                x=round(x + slot * 0.1, 2),
                y=round(y, 2),
                width=round(slot * 0.8, 2),
                height=round(height, 2),
                fill=SOURCE_COLOURS[source],
                title=f"{hour.start:%H:00}: {count:,} {SOURCE_LABELS[source].lower()}",
            )
        )
    return bars


def _tick_step(peak: int) -> int:
    """A round step (1, 2 or 5 x 10^n) so that four steps reach at least `peak`."""
    target = max(peak / 4, 1)
    magnitude = 10 ** math.floor(math.log10(target))
    return next(step * magnitude for step in (1, 2, 5, 10) if step * magnitude >= target)


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


# --- the admin index -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    label: str
    value: str
    note: str = ""


@dataclass(frozen=True)
class Dashboard:
    tiles: list[Tile]
    chart: Chart
    health: list[tuple[str, int]]
    scheduler: str


def dashboard_summary(*, now: datetime) -> Dashboard:
    """Everything the admin index shows, as display-ready values."""
    runs = run_stats(now=now)
    rate = f"{runs.success_rate:.0%}" if runs.success_rate is not None else "–"
    tiles = [
        Tile("Runs, last 24 h", f"{runs.runs:,}", f"{runs.failed} failed, {runs.partial} partial"),
        Tile("Success rate", rate, "runs that finished without an error"),
        Tile("Average duration", _seconds(runs.avg_ms), "per run"),
        Tile("p95 duration", _seconds(runs.p95_ms), "95% of runs took at most this"),
    ]
    states: dict[str, int] = {}
    for integration in DeviceIntegration.objects.all():
        state = integration_health(integration, now=now).state
        states[state] = states.get(state, 0) + 1
    return Dashboard(
        tiles=tiles,
        chart=readings_chart(readings_per_hour(now=now)),
        health=sorted(states.items()),
        scheduler=_scheduler_line(now=now),
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
