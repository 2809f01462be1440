"""Retention for everything that grows: webhook deliveries, activity entries and readings.

The ages: GSYNC_WEBHOOK_RETENTION_DAYS, GSYNC_ACTIVITY_RETENTION_DAYS, and each integration's
`telemetryRetentionDays` (blank: its readings are kept forever). `prune` is the one way old rows
go, for the daily task (integrations.scheduling) and `manage.py prune`; every kind goes a few
thousand rows per statement and transaction (gsync.batches), so no table is held for long.

On PostgreSQL readings go first by whole monthly partitions where every integration's cutoff
is past the partition's end (telemetry.retention.prune_partitions), then in batches.

Activity entries still `started` stay: their work is running, or their minute's webhook counts
are not rolled up yet. Readings outlive the entry that stored them: their link to it is cleared
first, in batches (telemetry.retention.unlink_activity). Keeping every entry that readings still
link to instead would keep nearly every sync's entry as long as its readings: by default, forever.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from gsync.batches import BATCH_SIZE, delete_in_batches, key_batches, past
from integrations.models import ActivityLog, DeviceIntegration, WebhookDelivery
from integrations.sync_settings import SettingsError
from telemetry.partitioning import Partition
from telemetry.retention import linked_readings, prune_partitions, prune_telemetry, unlink_activity

logger = logging.getLogger(__name__)

DELIVERIES = "webhook deliveries"
ACTIVITY = "activity entries"
READINGS = "readings"
PARTITION = "readings partition"
EVERY_INTEGRATION = "all integrations"


@dataclass(frozen=True)
class Pruned:
    """One kind of row (in one integration, for readings): what went, or would go."""

    kind: str
    scope: str
    cutoff: datetime | None  # None: kept forever
    rows: int = 0  # deleted (a dry run: to delete); a partition: PostgreSQL's estimate
    unlinked: int = 0  # activity entries: readings whose link to them is cleared
    note: str = ""


def prune(
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    stop_at: float | None = None,
) -> list[Pruned]:
    """Delete every kind of row older than its retention (with `dry_run`, count them); one log
    line says what went. `stop_at` (a `time.monotonic()` instant) leaves the rest for later."""
    now = now or timezone.now()
    work: dict[str, Any] = {"dry_run": dry_run, "batch_size": batch_size, "stop_at": stop_at}
    integrations = list(DeviceIntegration.objects.order_by("name"))
    cutoffs = [reading_cutoff(integration, now=now)[0] for integration in integrations]
    # A partition holds every integration's month: one that keeps its readings keeps them all.
    kept = [cutoff for cutoff in cutoffs if cutoff is not None]
    oldest = min(kept) if kept and len(kept) == len(cutoffs) else None
    partitions = prune_partitions(oldest_cutoff=oldest, dry_run=dry_run)
    dropped_before = max((p.end for p in partitions if p.end), default=None)
    results = [
        prune_deliveries(cutoff=days_before(now, settings.GSYNC_WEBHOOK_RETENTION_DAYS), **work),
        *(partition_pruned(partition) for partition in partitions),
        *(
            prune_readings(integration, now=now, dropped_before=dropped_before, **work)
            for integration in integrations
        ),
        # After the readings: those that go need no unlinking from the entries that go.
        prune_activity(cutoff=days_before(now, settings.GSYNC_ACTIVITY_RETENTION_DAYS), **work),
    ]
    if not dry_run:
        unfinished = " (stopped at its time limit: the rest goes next run)" if past(stop_at) else ""
        logger.info("prune: %s%s", summary(results), unfinished)
    return results


def days_before(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)


def prune_deliveries(
    *, cutoff: datetime, dry_run: bool = False, batch_size: int = BATCH_SIZE,
    stop_at: float | None = None,
) -> Pruned:  # fmt: skip
    """Webhook deliveries received before `cutoff`, whatever their outcome."""
    old = WebhookDelivery.objects.filter(received_at__lt=cutoff)
    rows = (
        old.count() if dry_run else delete_in_batches(old, batch_size=batch_size, stop_at=stop_at)
    )
    return Pruned(DELIVERIES, EVERY_INTEGRATION, cutoff, rows)


def prune_activity(
    *, cutoff: datetime, dry_run: bool = False, batch_size: int = BATCH_SIZE,
    stop_at: float | None = None,
) -> Pruned:  # fmt: skip
    """Activity entries started before `cutoff` and no longer `started`; the readings they
    stored stay, unlinked."""
    old = old_activity(cutoff)
    if dry_run:
        return Pruned(ACTIVITY, EVERY_INTEGRATION, cutoff, old.count(), linked_readings(old))
    deleted = unlinked = 0
    for batch in key_batches(old, batch_size=batch_size):
        unlinked += unlink_activity(batch, batch_size=batch_size)
        deleted += delete_in_batches(old.filter(pk__in=batch), batch_size=batch_size)
        if past(stop_at):
            break
    return Pruned(ACTIVITY, EVERY_INTEGRATION, cutoff, deleted, unlinked)


def old_activity(cutoff: datetime) -> QuerySet[ActivityLog]:
    return ActivityLog.objects.filter(started_at__lt=cutoff).exclude(
        status=ActivityLog.Status.STARTED
    )


def reading_cutoff(integration: DeviceIntegration, *, now: datetime) -> tuple[datetime | None, str]:
    """Before when the integration's readings go, or None and why they all stay."""
    try:
        days = integration.sync_settings.telemetry_retention_days
    except SettingsError as exc:
        # Unreadable settings keep everything: losing readings is worse than keeping them.
        return None, f"settings invalid, kept: {exc}"
    if days is None:
        return None, "kept forever"
    return days_before(now, days), ""


def prune_readings(
    integration: DeviceIntegration, *, now: datetime, dry_run: bool = False,
    batch_size: int = BATCH_SIZE, stop_at: float | None = None,
    dropped_before: datetime | None = None,
) -> Pruned:  # fmt: skip
    """The integration's readings older than its `telemetryRetentionDays`, if it sets one
    (with `dry_run`, those a drop of the partitions ending by `dropped_before` leaves)."""
    cutoff, note = reading_cutoff(integration, now=now)
    if cutoff is None:
        return Pruned(READINGS, integration.name, None, note=note)
    rows = prune_telemetry(
        integration_id=integration.pk,
        cutoff=cutoff,
        batch_size=batch_size,
        dry_run=dry_run,
        stop_at=stop_at,
        dropped_before=dropped_before,
    )
    return Pruned(READINGS, integration.name, cutoff, rows)


def partition_pruned(partition: Partition) -> Pruned:
    """A partition dropped whole (or to be): every integration's readings before its end."""
    return Pruned(
        PARTITION, EVERY_INTEGRATION, partition.end, partition.estimated_rows, note=partition.name
    )


def summary(results: list[Pruned]) -> str:
    """One line: every kind's count and cutoff."""
    return "; ".join(_summary_part(result) for result in results)


def _summary_part(result: Pruned) -> str:
    if result.kind == PARTITION and result.cutoff is not None:
        return (
            f"{result.kind} {result.note} (~{result.rows} readings before {shown(result.cutoff)})"
        )
    what = result.kind if result.scope == EVERY_INTEGRATION else f"{result.kind} of {result.scope}"
    if result.cutoff is None:
        return f"{what}: {result.note}"
    unlinked = f" ({result.unlinked} readings unlinked)" if result.kind == ACTIVITY else ""
    return f"{result.rows} {what} before {shown(result.cutoff)}{unlinked}"


def shown(moment: datetime) -> str:
    """The project's one date format (gsync/formats), in TIME_ZONE, with its zone."""
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S %Z}"
