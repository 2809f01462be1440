"""Processing stored webhook deliveries: parse, store the reading, record the outcome.

The view (integrations/webhooks.py) stores each authenticated request as a `WebhookDelivery`
before anything else; this module turns one delivery into telemetry, inside `atomic()` so a
failure rolls the work back while the delivery row keeps the error and traceback (dj-stripe's
pattern). The admin's "re-process" action and `manage.py reprocess_webhooks` run the same code
again on failed deliveries; `prune_deliveries` drops old ones.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.datastructures import CaseInsensitiveMapping

from integrations.golioth.payloads import PayloadError
from integrations.golioth.webhook_payloads import (
    UnsupportedMediaType,
    WebhookReading,
    parse_webhook,
)
from integrations.models import ActivityLog, DeviceIntegration, WebhookDelivery
from integrations.sync_settings import SyncSettings
from telemetry.ingest import IngestResult, Reading, ingest_readings
from telemetry.models import Device, TelemetryRecord, device_status

logger = logging.getLogger(__name__)

Outcome = WebhookDelivery.Outcome
REPROCESSABLE = (Outcome.FAILED, Outcome.REJECTED, Outcome.RECEIVED)


@dataclass
class DeliveryResult:
    outcome: str
    stored: int = 0
    duplicates: int = 0
    reason: str = ""
    # Why a failed delivery failed: "input" (400), "media-type" (415) or "internal" (500).
    failure: str = ""


@dataclass
class ReprocessResult:
    counts: dict[str, int] = field(default_factory=dict)
    stored: int = 0
    duplicates: int = 0
    skipped: int = 0

    def add(self, result: DeliveryResult) -> None:
        self.counts[result.outcome] = self.counts.get(result.outcome, 0) + 1
        self.stored += result.stored
        self.duplicates += result.duplicates

    @property
    def failed(self) -> int:
        return self.counts.get(Outcome.FAILED, 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def describe(self) -> str:
        parts = [f"{n} {outcome}" for outcome, n in sorted(self.counts.items())]
        if self.skipped:
            parts.append(f"{self.skipped} skipped (already processed)")
        summary = ", ".join(parts) or "nothing to do"
        return f"Re-processed {self.total} deliveries: {summary}; {self.stored} readings stored."


# --- processing ----------------------------------------------------------------------------------


def process_delivery(
    delivery: WebhookDelivery,
    *,
    integration: DeviceIntegration | None = None,
    activity_id: int | None = None,
    roll_up: bool = False,
) -> DeliveryResult:
    """Parse and store one delivery, and record the outcome on its row.

    Readings link to activity entry `activity_id`; with `roll_up` the delivery's counts are also
    added to that entry. Readings, outcome and counts commit together. A DatabaseError is
    recorded (when the database still answers) and raised again, so the view answers 503 and
    Golioth retries; anything else is recorded with its traceback.
    """
    integration = integration or delivery.integration
    roll_up_into = activity_id if roll_up else None
    try:
        sync_settings = integration.sync_settings
        message = parse_webhook(
            bytes(delivery.body),
            content_type=delivery.content_type,
            headers=CaseInsensitiveMapping(delivery.headers or {}),
            received_at=delivery.received_at,
            nest_payload=sync_settings.payloads_nested_under_path,
        )
        if message.reading is None:
            result = DeliveryResult(Outcome.IGNORED, reason=message.ignored)
            return conclude_delivery(delivery, result, roll_up_into=roll_up_into)
        with transaction.atomic():
            result = store_reading(
                message.reading,
                integration=integration,
                sync_settings=sync_settings,
                activity_id=activity_id,
            )
            return conclude_delivery(delivery, result, roll_up_into=roll_up_into)
    except PayloadError as exc:
        failure = "media-type" if isinstance(exc, UnsupportedMediaType) else "input"
        result = DeliveryResult(Outcome.FAILED, reason=str(exc), failure=failure)
        return conclude_delivery(delivery, result, roll_up_into=roll_up_into)
    except DatabaseError as exc:
        _record_crash(delivery, exc, roll_up_into=roll_up_into)
        raise
    except Exception as exc:
        logger.exception("webhook: delivery %s failed", delivery.pk)
        return _record_crash(delivery, exc, roll_up_into=roll_up_into)


def _record_crash(
    delivery: WebhookDelivery, exc: BaseException, *, roll_up_into: int | None
) -> DeliveryResult:
    result = DeliveryResult(
        Outcome.FAILED,
        reason=f"{type(exc).__name__}: {exc}".splitlines()[0][:500],
        failure="internal",
    )
    try:
        conclude_delivery(delivery, result, roll_up_into=roll_up_into, trace=traceback.format_exc())
    except DatabaseError:
        logger.exception("webhook: could not record the failure of delivery %s", delivery.pk)
    return result


def store_reading(
    reading: WebhookReading,
    *,
    integration: DeviceIntegration,
    sync_settings: SyncSettings,
    activity_id: int | None,
) -> DeliveryResult:
    if reading.project_id not in ("", integration.project_id):
        reason = f"project {reading.project_id!r} is not this integration's project"
        return DeliveryResult(Outcome.REJECTED, reason=reason[:300])
    device = _find_device(integration, reading.device_external_id, sync_settings=sync_settings)
    if device is None:
        reason = (
            f"unknown device {reading.device_external_id!r}: this integration does not add "
            "devices from webhooks (webhookCreatesDevices is off)"
        )
        return DeliveryResult(Outcome.REJECTED, reason=reason)
    ingested = ingest_readings(
        [_as_reading(reading, device)],
        integration_id=integration.pk,
        source=TelemetryRecord.Source.WEBHOOK,
        activity_id=activity_id,
        time_tolerance=timedelta(seconds=sync_settings.time_tolerance_seconds),
    )
    _refresh_status(device, reading.timestamp, sync_settings=sync_settings)
    return _ingest_outcome(ingested)


def _as_reading(reading: WebhookReading, device: Device) -> Reading:
    return Reading(
        device_pk=device.pk,
        device_external_id=reading.device_external_id,
        timestamp=reading.timestamp,
        payload=reading.payload,
        path=reading.path,
        time_exact=reading.time_exact,
    )


def _ingest_outcome(ingested: IngestResult) -> DeliveryResult:
    outcome = Outcome.PROCESSED if ingested.inserted else Outcome.DUPLICATE
    return DeliveryResult(outcome, stored=ingested.inserted, duplicates=ingested.duplicates)


def _find_device(
    integration: DeviceIntegration, external_id: str, *, sync_settings: SyncSettings
) -> Device | None:
    devices = Device.objects.only("pk", "status", "last_seen")
    device = next(iter(devices.filter(integration=integration, external_id=external_id)[:1]), None)
    if device is None and sync_settings.webhook_creates_devices:
        # Golioth sends no device name in a webhook; the next pull fills it in.
        device, _ = Device.objects.get_or_create(
            integration=integration, external_id=external_id, defaults={"name": external_id}
        )
    return device


def _refresh_status(device: Device, reading_time: datetime, *, sync_settings: SyncSettings) -> None:
    """Ingest moved last_seen; the status follows it (one UPDATE only when it changes)."""
    newest = max(filter(None, (device.last_seen, reading_time)))
    status = device_status(
        newest,
        now=timezone.now(),
        offline_after=timedelta(minutes=sync_settings.offline_after_minutes),
    )
    if status != device.status:
        Device.objects.filter(pk=device.pk).update(status=status)


def conclude_delivery(
    delivery: WebhookDelivery,
    result: DeliveryResult,
    *,
    roll_up_into: int | None = None,
    trace: str = "",
) -> DeliveryResult:
    """Record the outcome on the delivery row and, given an entry id, add it to that entry."""
    delivery.outcome = result.outcome
    delivery.error = result.reason
    delivery.traceback = trace
    delivery.readings_stored = result.stored
    delivery.readings_duplicate = result.duplicates
    delivery.processed_at = timezone.now()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        outcome=delivery.outcome,
        error=delivery.error,
        traceback=trace,
        readings_stored=result.stored,
        readings_duplicate=result.duplicates,
        processed_at=delivery.processed_at,
        attempts=F("attempts") + 1,
    )
    if roll_up_into is not None:
        _roll_up(roll_up_into, delivery, result)
    return result


def _roll_up(entry_id: int, delivery: WebhookDelivery, result: DeliveryResult) -> None:
    # Last statement of the transaction: the entry's row lock is held only until the commit.
    carried_reading = result.outcome in (Outcome.PROCESSED, Outcome.DUPLICATE)
    failed = result.outcome in (Outcome.FAILED, Outcome.REJECTED)
    ActivityLog.objects.add_counts(
        entry_id,
        completed_at=delivery.processed_at or timezone.now(),
        failure=f"delivery {delivery.pk}: {result.reason}" if failed else "",
        api_calls=1,
        readings_fetched=1 if carried_reading else 0,
        readings_inserted=result.stored,
        readings_duplicate=result.duplicates,
    )


# --- re-processing, pruning ----------------------------------------------------------------------


def reprocess_deliveries(
    deliveries: Iterable[WebhookDelivery], *, trigger: str = ActivityLog.Trigger.ADMIN
) -> ReprocessResult:
    """Run stored deliveries through the parser again (after a fix, or a settings change).

    Only failed, rejected and never-finished deliveries are re-run; processed ones are skipped.
    One `webhook_reprocessed` activity entry per integration holds the counts.
    """
    result = ReprocessResult()
    entries: dict[int, tuple[int, ReprocessResult]] = {}
    try:
        for delivery in deliveries:
            if delivery.outcome not in REPROCESSABLE:
                result.skipped += 1
                continue
            entry_id, own = entries.get(delivery.integration_id) or _reprocess_entry(
                delivery.integration, trigger
            )
            entries[delivery.integration_id] = (entry_id, own)
            outcome = process_delivery(delivery, activity_id=entry_id)
            result.add(outcome)
            own.add(outcome)
    finally:
        for entry_id, own in entries.values():
            _finish_reprocess_entry(entry_id, own)
    return result


def _reprocess_entry(integration: DeviceIntegration, trigger: str) -> tuple[int, ReprocessResult]:
    entry = ActivityLog.objects.log(
        integration,
        activity_type=ActivityLog.ActivityType.WEBHOOK_REPROCESSED,
        status=ActivityLog.Status.STARTED,
        trigger=trigger,
        message="Re-processing webhook deliveries.",
    )
    return entry.pk, ReprocessResult()


def _finish_reprocess_entry(entry_id: int, own: ReprocessResult) -> None:
    bad = own.failed + own.counts.get(Outcome.REJECTED, 0)
    ActivityLog.objects.add_counts(
        entry_id,
        completed_at=timezone.now(),
        status=ActivityLog.Status.PARTIAL if bad else ActivityLog.Status.SUCCESS,
        message=own.describe(),
        api_calls=own.total,
        readings_fetched=own.counts.get(Outcome.PROCESSED, 0)
        + own.counts.get(Outcome.DUPLICATE, 0),
        readings_inserted=own.stored,
        readings_duplicate=own.duplicates,
    )


def prune_deliveries(*, older_than_days: int, batch_size: int = 5000) -> int:
    """Delete deliveries received more than `older_than_days` ago, in batches (short locks)."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    old = WebhookDelivery.objects.filter(received_at__lt=cutoff).order_by()
    deleted = 0
    while pks := list(old.values_list("pk", flat=True)[:batch_size]):
        deleted += WebhookDelivery.objects.filter(pk__in=pks).delete()[0]
    return deleted
