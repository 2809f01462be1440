"""Is a scheduled run due: the one rule for the dispatcher, health, the dashboard and the admin.

`due(integration, now=...)` answers "run now, or why not, and when next": the dispatcher queues
what it says runs, logs the skips it names (`log_skip`, once per reason), the health column and the
dashboard read its state, and the admin shows its `describe()`.

A scheduled run needs, in this order: readable settings, `syncEnabled`, the integration active
(not paused, not stopped after failures), the time window open, and its interval elapsed since the
last run was queued. A run whose worker died (its lease left to expire) is due at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from django.utils.timesince import timeuntil

from integrations.models import ActivityLog, DeviceIntegration
from integrations.sync_settings import SettingsError, SyncSettings
from integrations.time_window import TimeWindow


class Hold(StrEnum):
    """Why a scheduled run is not running now."""

    INVALID = "invalid settings"
    DISABLED = "disabled"
    PAUSED = "paused"
    STOPPED = "stopped"
    RUNNING = "running"
    OUTSIDE_WINDOW = "outside its window"
    WAITING = "waiting for its interval"


# The holds that skip a run (logged once per reason); waiting and running only mean "not yet".
SKIPS = frozenset(Hold) - {Hold.WAITING, Hold.RUNNING}
# What `force` (runsync --force, Sync now) sets aside: never invalid settings or a held lease.
FORCEABLE = frozenset({Hold.DISABLED, Hold.PAUSED, Hold.STOPPED, Hold.OUTSIDE_WINDOW})


@dataclass(frozen=True)
class Due:
    now: datetime
    hold: Hold | None = None  # None: due now
    reason: str = ""  # for a skip: the activity log's "Sync skipped: <reason>"
    next_at: datetime | None = None  # the next scheduled run; None: now, or not scheduled
    since: datetime | None = None  # due now: since when (for "late")
    window: TimeWindow | None = None
    opens: bool = False  # next_at is when the window opens

    @property
    def runs(self) -> bool:
        return self.hold is None

    @property
    def skip_reason(self) -> str | None:
        return self.reason if self.hold in SKIPS else None

    def describe(self) -> str:
        """The admin's "Next run": truthful about pause, syncEnabled, windows and the interval."""
        if self.runs:
            return "now (at the next dispatch, within a minute)"
        if self.hold == Hold.RUNNING:
            return "running now"
        if self.next_at is not None and self.window is not None and self.opens:
            return f"window opens {_local_and_utc(self.next_at, self.window.timezone)}"
        if self.next_at is not None:
            return f"in {timeuntil(self.next_at, self.now)} ({self.next_at:%H:%M:%S} UTC)"
        texts = {
            Hold.INVALID: "not scheduled: its settings are invalid",
            Hold.DISABLED: "not scheduled: syncEnabled is off",
            Hold.PAUSED: "not scheduled: paused (Resume to schedule it)",
            Hold.STOPPED: "not scheduled: stopped after failures (Resume to schedule it)",
        }
        return texts.get(self.hold, "not scheduled: the window never opens") if self.hold else ""


def due(integration: DeviceIntegration, *, now: datetime, tick: datetime | None = None) -> Due:
    """Run now, or why not. `tick` is the dispatch minute the interval is judged at (the
    dispatcher's, see scheduling.dispatch_tick); `now` by default."""
    try:
        sync_settings = integration.sync_settings
    except SettingsError as exc:
        return Due(now, Hold.INVALID, f"settings are invalid: {exc}"[:200])
    if not sync_settings.sync_enabled:
        return Due(now, Hold.DISABLED, "sync is disabled (syncEnabled is off)")
    if integration.status == DeviceIntegration.Status.PAUSED:
        return Due(now, Hold.PAUSED, "integration is paused, not active")
    if integration.status != DeviceIntegration.Status.ACTIVE:
        status = integration.get_status_display().lower()
        return Due(now, Hold.STOPPED, f"integration is {status}, not active")
    if integration.locked_until and integration.locked_until > now:
        return Due(now, Hold.RUNNING, window=sync_settings.time_window)
    return _by_the_clock(integration, sync_settings, now=now, tick=tick or now)


def _by_the_clock(
    integration: DeviceIntegration, sync_settings: SyncSettings, *, now: datetime, tick: datetime
) -> Due:
    """An active integration's run: the time window, then the interval since the last one."""
    window = sync_settings.time_window
    interval = timedelta(seconds=sync_settings.sync_interval_seconds)
    last = integration.last_queued_at or integration.last_sync_at
    scheduled = last + interval if last else None
    # A run releases its lease however it ends: one left to expire means its worker died, and
    # its window is read again at once.
    interval_due = None if integration.locked_by else scheduled
    earliest = max(now, interval_due) if interval_due else now
    opens_window = window is not None and not window.contains(earliest)
    next_at = window.next_opening(earliest) if window and opens_window else earliest
    if window is not None and not window.contains(now):
        reason = f"outside the sync time window ({window.describe()})"[:200]
        return Due(now, Hold.OUTSIDE_WINDOW, reason, next_at, window=window, opens=opens_window)
    if interval_due is not None and interval_due > tick:
        return Due(now, Hold.WAITING, next_at=next_at, window=window, opens=opens_window)
    since = scheduled or integration.created_at + interval
    return Due(now, since=since, window=window)


def log_skip(integration: DeviceIntegration, reason: str, *, trigger: str) -> ActivityLog | None:
    """Say why a run was skipped, once per reason: an integration paused for a week, polled
    every minute, leaves one entry, not ten thousand. A run that syncs clears the reason."""
    reason = reason[:200]
    changed = (
        DeviceIntegration.objects.filter(pk=integration.pk)
        .exclude(last_skip_reason=reason)
        .update(last_skip_reason=reason)
    )
    if not changed:
        return None
    integration.last_skip_reason = reason
    return ActivityLog.objects.log(
        integration,
        activity_type=ActivityLog.ActivityType.SYNC_SKIPPED,
        status=ActivityLog.Status.SKIPPED,
        trigger=trigger,
        message=f"Sync skipped: {reason}",
    )


def reconcile_due(integration: DeviceIntegration, *, now: datetime) -> bool:
    """A scheduled reconcile is due: it is on, the pull has a cursor to check up to, and its
    interval has passed since the last one. (Enabled, active and in window: as `due` says.)"""
    try:
        minutes = integration.sync_settings.reconcile_interval_minutes
    except SettingsError:
        return False
    if not minutes or integration.sync_cursor is None:
        return False
    last = integration.last_reconcile_at
    return last is None or last + timedelta(minutes=minutes) <= now


def _local_and_utc(moment: datetime, zone: str) -> str:
    local = moment.astimezone(ZoneInfo(zone))
    text = f"{local:%a %H:%M} {zone}"
    if zone != "UTC":
        text += f" ({moment.astimezone(UTC):%H:%M} UTC)"
    return text
