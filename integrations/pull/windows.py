"""The window each run reads: the pull's and the reconcile's, the one place they are decided.

The pull reads `[cursor - overlapSeconds, now - settleSeconds)`: the overlap re-reads the end of
the last window for readings that arrive a little late, and the window stays closed `settle`
seconds behind now because data arriving inside an open window shifts Golioth's pages. A backfill
reads what it is given, never past the same closed end. A reconcile checks whole hours of its
lookback up to what the pull has committed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from integrations.models import DeviceIntegration
from integrations.pull.completeness import floor_to_bucket
from integrations.sync_settings import SyncSettings


def pull_window(
    integration: DeviceIntegration,
    sync_settings: SyncSettings,
    *,
    now: datetime,
    since: datetime | None,
    until: datetime | None,
) -> tuple[datetime, datetime]:
    """The closed window of this run: it never reaches past `now - settleSeconds`, because data
    arriving inside an open window shifts Golioth's pages under us."""
    closed = now - timedelta(seconds=sync_settings.settle_seconds)
    if since is not None or until is not None:
        if since is None:
            raise ValueError("a backfill needs a start (since)")
        end = min(until or closed, closed)
        if since >= end:
            raise ValueError(
                f"the backfill window is empty: {since:%Y-%m-%d %H:%M:%S} is not "
                f"before {end:%Y-%m-%d %H:%M:%S} UTC"
            )
        return since, end
    if integration.sync_cursor is not None:
        start = integration.sync_cursor - timedelta(seconds=sync_settings.overlap_seconds)
    else:
        interval = timedelta(seconds=sync_settings.sync_interval_seconds)
        start = sync_settings.backfill_from or now - interval
    return min(start, closed), closed


def reconcile_window(
    integration: DeviceIntegration,
    sync_settings: SyncSettings,
    *,
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[datetime, datetime]:
    """[start, end) a reconcile checks: by default the lookback, in whole hours, up to what the
    pull has committed (its cursor) and never past `now - settleSeconds`."""
    closed = now - timedelta(seconds=sync_settings.settle_seconds)
    if since is not None or until is not None:
        if since is None:
            raise ValueError("a reconcile window needs a start (since)")
        end = min(until or closed, closed)
    else:
        end = floor_to_bucket(min(closed, integration.sync_cursor or closed))
        since = floor_to_bucket(end - timedelta(hours=sync_settings.reconcile_lookback_hours))
    if since >= end:
        raise ValueError(
            f"the reconcile window is empty: {since:%Y-%m-%d %H:%M:%S} is not before "
            f"{end:%Y-%m-%d %H:%M:%S} UTC"
        )
    return since, end
