"""The webhook's activity log: one entry per integration and minute of deliveries.

A request only finds or adds its minute's entry (`webhook_minute_entry`, cached per process; a
unique constraint keeps it one per minute across processes); the dispatcher fills in the counts
of minutes that are over (`roll_up_webhook_minutes`), off the request path, once no delivery of
the minute waits for an ingest worker (integrations.push.queue).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Count, Max, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from integrations.models import ActivityLog, DeviceIntegration, WebhookDelivery

MINUTE = timedelta(minutes=1)
# A delivery is stored with its minute's received_at before it is processed: give the last ones of
# a minute this long to finish before their outcomes are counted.
ROLL_UP_GRACE = timedelta(seconds=15)
# A minute whose deliveries wait for an ingest worker is counted once they are stored, or after
# this long regardless (no worker running): its entry then shows what was stored by then.
QUEUE_PATIENCE = timedelta(hours=1)
# Per process: integration token -> (minute, entry id). Tokens, not pks: a pk can come back
# (SQLite reuses the ids a rollback freed), a token never does.
_minute_entries: dict[str, tuple[datetime, int]] = {}
MINUTE_ENTRIES_CACHED = 1000

Outcome = WebhookDelivery.Outcome


def webhook_minute_entry(integration: DeviceIntegration, *, at: datetime) -> int:
    """The id of `integration`'s `webhook_received` entry for the minute of `at`: read from the
    database once a minute per process, not once a request. Nothing else: the dispatcher fills
    in the minutes that are over."""
    minute = at.replace(second=0, microsecond=0)
    cached = _minute_entries.get(integration.webhook_token)
    if cached is not None and cached[0] == minute:
        return cached[1]
    entry_id = ActivityLog.objects.minute_entry(integration, at=at)
    if len(_minute_entries) >= MINUTE_ENTRIES_CACHED:
        _minute_entries.clear()
    _minute_entries[integration.webhook_token] = (minute, entry_id)
    return entry_id


def forget_minute_entries() -> None:
    """Drop the cached entry ids (after a database error: an entry may have been rolled back)."""
    _minute_entries.clear()


def roll_up_webhook_minutes(*, now: datetime | None = None) -> int:
    """Fill the counts of the `webhook_received` entries whose minute is over from that minute's
    deliveries; each entry once (`started` -> success or partial). Returns how many.

    The dispatcher's job, every minute: a request never waits for it."""
    now = now or timezone.now()
    due = ActivityLog.objects.filter(
        activity_type=ActivityLog.ActivityType.WEBHOOK_RECEIVED,
        status=ActivityLog.Status.STARTED,
        started_at__lte=now - MINUTE - ROLL_UP_GRACE,
    )
    filled = 0
    for entry in due.only("integration_id", "started_at"):
        if _still_queued(entry) and entry.started_at > now - QUEUE_PATIENCE:
            continue  # its counts would miss what the ingest workers have still to store
        _fill_minute_entry(entry)
        filled += 1
    return filled


def _still_queued(entry: ActivityLog) -> bool:
    return _minute_deliveries(entry).filter(outcome=Outcome.QUEUED).exists()


def _minute_deliveries(entry: ActivityLog) -> QuerySet[WebhookDelivery]:
    minute = entry.started_at
    return WebhookDelivery.objects.filter(
        integration_id=entry.integration_id,
        received_at__gte=minute,
        received_at__lt=minute + MINUTE,
    )


def _fill_minute_entry(entry: ActivityLog) -> None:
    # The device of a delivery is in its body: not counted (devices_seen stays 0).
    minute = entry.started_at
    deliveries = _minute_deliveries(entry)
    counts = deliveries.aggregate(
        deliveries=Count("pk"),
        readings_fetched=Count("pk", filter=Q(outcome__in=(Outcome.PROCESSED, Outcome.DUPLICATE))),
        readings_inserted=Coalesce(Sum("readings_stored"), 0),
        readings_duplicate=Coalesce(Sum("readings_duplicate"), 0),
        last_done=Max("processed_at"),
    )
    last_done = counts.pop("last_done")
    failed = deliveries.filter(outcome__in=(Outcome.FAILED, Outcome.REJECTED))
    failure = failed.order_by("-received_at", "-pk").values_list("pk", "error").first()
    ActivityLog.objects.finish(
        entry,
        status=ActivityLog.Status.PARTIAL if failure else ActivityLog.Status.SUCCESS,
        completed_at=last_done or minute + MINUTE,
        error_message=f"delivery {failure[0]}: {failure[1]}"[:2000] if failure else "",
        response_time_ms=0,
        **counts,
    )
