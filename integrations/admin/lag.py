"""How far behind is the mirror: lag at a glance, for the integrations list, its page and the
dashboard (issue 12).

Three ages and two counts per integration, judged against its sync interval:
- the cursor's age (the end of the last committed pull window): the pull's lag;
- the newest reading's age (by the reading's own time): what staff would check first;
- readings per minute over the last hour (by reading time);
- devices silent longer than the integration's "Offline after" setting (`offlineAfterMinutes`),
  the same threshold telemetry.status applies, live from `last_seen` rather than the stored
  status (which the pull refreshes only when it runs).

`annotate_lag` adds them to a queryset with correlated subqueries answered by the indexes on
(integration, device_timestamp), (integration, -last_seen) and the per-minute counts
(telemetry.counts): a list of 100 integrations costs
the queries of a list of 1, plus one to read the thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import (
    Case,
    Count,
    DateTimeField,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from integrations.models import DeviceIntegration
from integrations.setting_table import DEFAULTS
from integrations.sync_settings import SettingsError, SyncSettings
from telemetry.counts import minute_start
from telemetry.models import Device, ReadingCount, TelemetryRecord

# An age is "behind" past this many sync intervals (plus the settle time a window closes behind
# now): one interval is the normal wait for the next run, the second is slack for a slow run.
BEHIND_AFTER_INTERVALS = 2
RATE_PERIOD = timedelta(hours=1)
DEFAULT_OFFLINE_AFTER = timedelta(minutes=DEFAULTS["offline_after_minutes"])


def annotate_lag(
    queryset: QuerySet[DeviceIntegration], *, now: datetime
) -> QuerySet[DeviceIntegration]:
    readings = TelemetryRecord.objects.filter(integration=OuterRef("pk"))
    newest = readings.order_by("-device_timestamp").values("device_timestamp")[:1]
    recent = (
        # Whole minutes (telemetry.counts): from the start of the minute an hour ago.
        ReadingCount.objects.filter(
            integration_id=OuterRef("pk"), minute__gte=minute_start(now - RATE_PERIOD)
        )
        .values("integration_id")
        .annotate(n=Sum("readings"))
        .values("n")
    )
    silent = (
        Device.objects.filter(integration=OuterRef("pk"), last_seen__lt=OuterRef("silent_cutoff"))
        .values("integration")
        .annotate(n=Count("id"))
        .values("n")
    )
    return queryset.annotate(
        newest_reading_at=Subquery(newest, output_field=DateTimeField()),
        readings_last_hour=Coalesce(Subquery(recent, output_field=IntegerField()), 0),
        silent_cutoff=_silent_cutoffs(now=now),
        silent_devices=Coalesce(Subquery(silent, output_field=IntegerField()), 0),
    )


def _silent_cutoffs(*, now: datetime) -> Case:
    """Each integration's "seen before this is silent" moment, as one SQL CASE: the threshold
    lives in the settings JSON, which SQL cannot read alike on SQLite and PostgreSQL."""
    whens = [
        When(pk=pk, then=Value(now - offline_after))
        for pk, offline_after in _offline_afters().items()
        if offline_after != DEFAULT_OFFLINE_AFTER
    ]
    default = Value(now - DEFAULT_OFFLINE_AFTER)
    return Case(*whens, default=default, output_field=DateTimeField())


def _offline_afters() -> dict[int, timedelta]:
    afters = {}
    for pk, settings in DeviceIntegration.objects.values_list("pk", "settings"):
        try:
            afters[pk] = SyncSettings.from_json(settings).offline_after
        except SettingsError:
            afters[pk] = DEFAULT_OFFLINE_AFTER
    return afters


@dataclass(frozen=True)
class Age:
    """An age judged against the interval: "3 min (ok)"."""

    age: timedelta | None
    state: str  # ok | behind | no pull | "" (nothing to judge yet)
    text: str
    title: str


@dataclass(frozen=True)
class Lag:
    cursor: Age
    newest: Age
    per_minute: float
    silent_devices: int
    offline_after: timedelta

    @property
    def rate_text(self) -> str:
        return f"{self.per_minute:,.1f}/min"

    @property
    def silent_text(self) -> str:
        return f"{self.silent_devices:,} silent > {short_age(self.offline_after)}"

    @property
    def silent_short(self) -> str:
        return f"{self.silent_devices:,} silent"


def lag_of(integration: DeviceIntegration, *, now: datetime) -> Lag:
    """The lag of an integration from `annotate_lag`'s annotations."""
    try:
        settings: SyncSettings | None = integration.sync_settings
    except SettingsError:
        settings = None
    interval = timedelta(seconds=settings.sync_interval_seconds if settings else 300)
    slack = BEHIND_AFTER_INTERVALS * interval + timedelta(
        seconds=settings.settle_seconds if settings else 0
    )
    pulls = settings is not None and settings.sync_enabled
    return Lag(
        cursor=judge_age(
            integration.sync_cursor, now=now, slack=slack, what="cursor", judged=pulls
        ),
        newest=judge_age(
            getattr(integration, "newest_reading_at", None), now=now, slack=slack, what="newest"
        ),
        per_minute=getattr(integration, "readings_last_hour", 0) / 60,
        silent_devices=getattr(integration, "silent_devices", 0),
        offline_after=settings.offline_after if settings else DEFAULT_OFFLINE_AFTER,
    )


def judge_age(
    moment: datetime | None, *, now: datetime, slack: timedelta, what: str, judged: bool = True
) -> Age:
    limit = f"behind after {short_age(slack)} ({BEHIND_AFTER_INTERVALS} intervals + settle)"
    if moment is None:
        nothing = "no cursor yet (never synced)" if what == "cursor" else "no readings yet"
        return Age(None, "", "none", nothing)
    age = max(now - moment, timedelta(0))
    if not judged:
        return Age(age, "no pull", short_age(age), f"{what} age; scheduled sync is off")
    state = "behind" if age > slack else "ok"
    return Age(age, state, f"{short_age(age)} ({state})", f"{what} age; {limit}")


def short_age(age: timedelta) -> str:
    """Compact, for a badge: 45 s, 7 min, 3.1 h, 14 h, 3.1 d."""
    seconds = int(age.total_seconds())
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{seconds // 60} min"
    hours = seconds / 3600
    if hours < 10:
        return f"{hours:.1f}".removesuffix(".0") + " h"
    if hours < 48:
        return f"{hours:.0f} h"
    return f"{hours / 24:.1f}".removesuffix(".0") + " d"
