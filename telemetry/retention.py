"""Telemetry retention: an integration's readings older than its cutoff go, in small batches.

Storage rules live here, so the scheduler and `manage.py prune` ask the same two functions:
`prune_telemetry` (which readings are old, and how they go) and `unlink_activity` (how readings
lose the link to an activity entry that is about to be pruned). Old means Golioth's time for the
reading (`device_timestamp`), the column the `telemetry_integration_time` index leads with and
the one device_telemetry_history is to be partitioned by (issue 11).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from gsync.batches import BATCH_SIZE, delete_in_batches
from telemetry.models import TelemetryRecord


def old_readings(*, integration_id: int, cutoff: datetime) -> int:
    """How many of the integration's readings are older than `cutoff`."""
    return _older(integration_id=integration_id, cutoff=cutoff).count()


def prune_telemetry(
    *,
    integration_id: int,
    cutoff: datetime,
    batch_size: int = BATCH_SIZE,
    dry_run: bool = False,
    stop_at: float | None = None,
) -> int:
    """Delete the integration's readings older than `cutoff`; return how many went (with
    `dry_run`, how many would go, deleting nothing).

    `stop_at` (a `time.monotonic()` instant) ends the work early; the rest waits for the next run.
    """
    if dry_run:
        return old_readings(integration_id=integration_id, cutoff=cutoff)
    # Seam for monthly partitions (issue 11): a partition whose whole month ends before `cutoff`
    # is detached and dropped here instead of emptied row by row, and the batches below then
    # only see the month the cutoff falls in. A partition holds every integration's readings,
    # so it may go whole only when each integration's cutoff is past its end (an integration
    # that keeps readings forever keeps the partition): the caller knows every cutoff, so the
    # drop would take all of them, where this function takes one.
    return delete_in_batches(
        _older(integration_id=integration_id, cutoff=cutoff),
        batch_size=batch_size,
        stop_at=stop_at,
    )


def linked_readings(activity_ids: Collection[int] | QuerySet[Any]) -> int:
    """How many readings link to one of these activity entries."""
    return TelemetryRecord.objects.filter(activity_id__in=activity_ids).count()


def unlink_activity(
    activity_ids: Collection[int] | QuerySet[Any], *, batch_size: int = BATCH_SIZE
) -> int:
    """Set the activity link of readings stored by these entries to NULL, in batches; return how
    many readings changed. The readings themselves stay.

    Django's own SET_NULL (when an entry is deleted) would update every linked reading in one
    statement inside the delete's transaction: a backfill entry links a million readings.
    """
    linked = TelemetryRecord.objects.filter(activity_id__in=activity_ids).order_by()
    unlinked = 0
    while batch := list(linked.values_list("pk", flat=True)[:batch_size]):
        unlinked += TelemetryRecord.objects.filter(pk__in=batch).update(activity=None)
    return unlinked


def _older(*, integration_id: int, cutoff: datetime) -> QuerySet[TelemetryRecord]:
    return TelemetryRecord.objects.filter(
        integration_id=integration_id, device_timestamp__lt=cutoff
    )
