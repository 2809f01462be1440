"""Telemetry retention: an integration's readings older than its cutoff go, in small batches.

Storage rules live here, so the scheduler and `manage.py prune` ask the same functions:
`prune_partitions` (which monthly partitions go whole), `prune_telemetry` (which readings are
old, and how they go) and `unlink_activity` (how readings lose the link to an activity entry that
is about to be pruned). Old means Golioth's time for the reading (`device_timestamp`), the column
the `telemetry_integration_time` index leads with and device_telemetry_history is partitioned by
on PostgreSQL (telemetry.partitioning).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from gsync.batches import BATCH_SIZE, delete_in_batches
from telemetry.models import TelemetryRecord
from telemetry.partitioning import Partition, drop_partition, droppable_partitions


def prune_partitions(*, oldest_cutoff: datetime | None, dry_run: bool = False) -> list[Partition]:
    """Drop whole the partitions all of whose readings are older than `oldest_cutoff`, the
    earliest of every integration's cutoff (None when one keeps its readings forever: then no
    partition goes, since each holds every integration's readings of its month). Returns those
    dropped (with `dry_run`, those that would be). PostgreSQL only; elsewhere nothing.

    The integrations' batches (`prune_telemetry`) then delete the rest, row by row: the month a
    cutoff falls in, and the readings of integrations that keep theirs longer.
    """
    droppable = droppable_partitions(oldest_cutoff)
    if dry_run:
        return droppable
    return [partition for partition in droppable if drop_partition(partition)]


def old_readings(*, integration_id: int, cutoff: datetime, since: datetime | None = None) -> int:
    """How many of the integration's readings are older than `cutoff` (and, with `since`, not
    older than that: what a partition drop leaves to the batches)."""
    older = _older(integration_id=integration_id, cutoff=cutoff)
    return (older if since is None else older.filter(device_timestamp__gte=since)).count()


def prune_telemetry(
    *,
    integration_id: int,
    cutoff: datetime,
    batch_size: int = BATCH_SIZE,
    dry_run: bool = False,
    stop_at: float | None = None,
    dropped_before: datetime | None = None,
) -> int:
    """Delete the integration's readings older than `cutoff`; return how many went (with
    `dry_run`, how many would go, deleting nothing).

    `stop_at` (a `time.monotonic()` instant) ends the work early; the rest waits for the next run.
    `dropped_before`: a dry run's partitions to be dropped whole end there (`prune_partitions`),
    so their readings are not counted again here.
    """
    if dry_run:
        return old_readings(integration_id=integration_id, cutoff=cutoff, since=dropped_before)
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
