"""Golioth's LightDB Stream retention horizon: the one rule for "this window reaches past it".

Golioth keeps LightDB Stream 30 days unless a plan says more (shared/golioth-api.md §6, Golioth's
2026 pricing post); GSYNC_STREAM_RETENTION_DAYS says what this deployment's plan keeps. A window
that starts before now minus that finds nothing there: the pull reports success over readings it
can never fetch. Health, the admin, the system check, `runsync --since` and `integration
create/update` all ask this module, so they warn with the same words.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings

from integrations.models import DeviceIntegration
from integrations.sync_settings import SettingsError


def retention_horizon(*, now: datetime) -> datetime:
    """The oldest moment Golioth still holds stream readings for."""
    return now - timedelta(days=settings.GSYNC_STREAM_RETENTION_DAYS)


def reaches_past_retention(
    start: datetime, *, now: datetime, what: str = "The window"
) -> str | None:
    """A warning when a window starting at `start` reaches past the horizon, else None."""
    horizon = retention_horizon(now=now)
    if start >= horizon:
        return None
    days = settings.GSYNC_STREAM_RETENTION_DAYS
    return (
        f"{what} starts {_utc(start)}, before Golioth's LightDB Stream retention horizon "
        f"({_utc(horizon)}: {days} days, GSYNC_STREAM_RETENTION_DAYS). Golioth no longer holds "
        "older readings: no pull or reconcile can fetch them."
    )


def retention_warnings(integration: DeviceIntegration, *, now: datetime) -> list[str]:
    """Every window of `integration` that reaches past the horizon: the next pull's (cursor
    minus overlap, or backfillFrom before the first run) and the reconcile lookback's."""
    try:
        sync_settings = integration.sync_settings
    except SettingsError:
        return []  # health and the admin report invalid settings themselves
    starts = []
    if integration.sync_cursor is not None:
        overlap = timedelta(seconds=sync_settings.overlap_seconds)
        starts.append(("The next pull (cursor minus overlap)", integration.sync_cursor - overlap))
    elif sync_settings.backfill_from is not None:
        # Only the first run reads backfillFrom; afterwards the cursor rules.
        starts.append(("The first pull (backfillFrom)", sync_settings.backfill_from))
    lookback = timedelta(hours=sync_settings.reconcile_lookback_hours)
    starts.append(("The reconcile window (reconcileLookbackHours)", now - lookback))
    warnings = (reaches_past_retention(start, now=now, what=what) for what, start in starts)
    return [warning for warning in warnings if warning]


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
