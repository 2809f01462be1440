"""The integration page as a control panel (issue 12): what staff check before they touch a
setting, above the settings form.

`control_panel` gathers it as display-ready values: health (integrations.admin.dashboard's
judgement), the last error in full, the next run (integrations.due), lag, "verified complete
through", readings in the last hour and 24 h by reading time, the last runs, and a 7-day run
history chart. The buttons are the changelist's actions for this one integration
(SchedulingAdminMixin.panel_action_view runs them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Q, Sum
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from gsync.admin_display import format_duration
from integrations.admin.charts import Chart, Column, Series, stacked_bars
from integrations.admin.dashboard import DAY, Health, integration_health
from integrations.admin.history import RUN_ACTIVITY, Buckets, RunBucket, run_history
from integrations.admin.lag import Lag, annotate_lag, lag_of
from integrations.due import due
from integrations.models import ActivityLog, DeviceIntegration
from telemetry.counts import minute_start
from telemetry.models import ReadingCount

LAST_RUNS = 10
HISTORY_BUCKET, HISTORY_BUCKETS = timedelta(hours=6), 28  # 7 days in quarters of a day


@dataclass(frozen=True)
class Run:
    entry: ActivityLog
    url: str
    window: str
    counts: str
    duration: str


@dataclass(frozen=True)
class Panel:
    health: Health
    last_error: str
    next_run: str
    lag: Lag
    verified_through: str
    readings_hour: int
    readings_day: int
    runs: list[Run]
    charts: list[Chart]


def control_panel(integration: DeviceIntegration, *, now: datetime) -> Panel:
    annotated = annotate_lag(DeviceIntegration.objects.filter(pk=integration.pk), now=now).get()
    # Whole minutes (telemetry.counts): from the start of the minute a day and an hour ago.
    hour_ago = minute_start(now - timedelta(hours=1))
    readings = ReadingCount.objects.filter(
        integration_id=integration.pk, minute__gte=minute_start(now - DAY)
    ).aggregate(
        day=Coalesce(Sum("readings"), 0),
        hour=Coalesce(Sum("readings", filter=Q(minute__gte=hour_ago)), 0),
    )
    verified = annotated.verified_through
    return Panel(
        health=integration_health(annotated, now=now),
        last_error=annotated.sync_error.strip(),
        next_run=due(annotated, now=now).describe(),
        lag=lag_of(annotated, now=now),
        verified_through=f"{verified.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        if verified
        else "not yet (Verify completeness runs a reconcile)",
        readings_hour=readings["hour"],
        readings_day=readings["day"],
        runs=last_runs(integration),
        charts=history_charts(
            run_history(integration.pk, Buckets(HISTORY_BUCKET, HISTORY_BUCKETS, now))
        ),
    )


def last_runs(integration: DeviceIntegration, *, limit: int = LAST_RUNS) -> list[Run]:
    entries = (
        ActivityLog.objects.filter(integration=integration, activity_type__in=RUN_ACTIVITY)
        .exclude(status=ActivityLog.Status.SKIPPED)
        .order_by("-started_at", "-id")[:limit]
    )
    return [
        Run(
            entry=entry,
            url=reverse("admin:integrations_activitylog_change", args=[entry.pk]),
            window=_window(entry),
            counts=f"{entry.readings_fetched:,} fetched, {entry.readings_inserted:,} new, "
            f"{entry.readings_duplicate:,} dup.",
            duration=format_duration(entry.response_time_ms),
        )
        for entry in entries
    ]


def _window(entry: ActivityLog) -> str:
    if entry.window_start is None or entry.window_end is None:
        return "-"
    start, end = entry.window_start.astimezone(UTC), entry.window_end.astimezone(UTC)
    end_format = "%H:%M:%S" if start.date() == end.date() else "%Y-%m-%d %H:%M:%S"
    return f"{start:%Y-%m-%d %H:%M:%S} – {end:{end_format}} UTC"


def history_charts(history: list[RunBucket]) -> list[Chart]:
    """Three small charts over the same 7 days: the longest run, readings inserted, failures."""
    tz = timezone.get_current_timezone()

    def label(start: datetime) -> str:
        return f"{timezone.localtime(start, tz):%a %d}"

    def chart(key: str, name: str, colour: str, value, unit, summary: str) -> Chart:
        columns = [Column(b.start, {key: value(b)}) for b in history]
        return stacked_bars(
            columns, [Series(key, name, colour)], summary=summary, label=label, label_every=4,
            unit=unit, width=1000, height=110,
        )  # fmt: skip

    runs = sum(b.runs for b in history)
    inserted = sum(b.inserted for b in history)
    return [
        chart(
            "duration", "longest run", "#79aec8", lambda b: b.longest_ms / 1000,
            lambda v: f"{v:,.0f} s" if v >= 10 else f"{v:,.1f} s",
            f"Longest run per 6 h: {runs:,} runs in 7 days",
        ),
        chart(
            "inserted", "readings inserted", "#417690", lambda b: b.inserted,
            lambda v: f"{v:,.0f}", f"{inserted:,} readings inserted by runs",
        ),
        chart(
            "failed", "failed runs", "#c62828", lambda b: b.failed, lambda v: f"{v:,.0f}",
            f"{sum(b.failed for b in history):,} failed runs",
        ),
    ]  # fmt: skip
