"""Processing stored webhook deliveries: parse, store the reading, record the outcome.

The view (integrations/push/view.py) stores each authenticated request as a `WebhookDelivery`
before anything else; this module turns one delivery into telemetry, inside `atomic()` so a
failure rolls the work back while the delivery row keeps the error and traceback (dj-stripe's
pattern). The admin's "re-process" action and `manage.py reprocess_webhooks` run the same code
again on failed deliveries (old ones are pruned by integrations.pruning).

Activity: readings link to their minute's `webhook_received` entry (integrations.push.minutes),
which no delivery writes to: concurrent requests would all queue on that one row's lock.
"""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction
from django.db.models.expressions import DatabaseDefault
from django.utils import timezone
from django.utils.datastructures import CaseInsensitiveMapping

from integrations.golioth.paths import data_path
from integrations.golioth.payloads import PayloadError
from integrations.golioth.webhook_payloads import (
    UnsupportedMediaType,
    WebhookReading,
    parse_webhook,
)
from integrations.models import ActivityLog, DeviceIntegration, WebhookDelivery
from integrations.push import prepared
from integrations.sync_settings import SyncSettings
from telemetry.ingest import IngestResult, Reading, ingest_readings
from telemetry.models import Device, TelemetryRecord
from telemetry.status import offline_cutoff, status_sql

logger = logging.getLogger(__name__)

Outcome = WebhookDelivery.Outcome
# Ignored too: a path that was not mirrored is stored once mirroredPaths includes it.
REPROCESSABLE = (Outcome.FAILED, Outcome.REJECTED, Outcome.RECEIVED, Outcome.IGNORED)


@dataclass
class DeliveryResult:
    outcome: str
    stored: int = 0
    duplicates: int = 0
    reason: str = ""
    # Why a failed delivery failed: "input" (400), "media-type" (415), "internal" (500) or
    # "database" (503); "too-large" for a rejected reading over GSYNC_MAX_READING_BYTES (413).
    failure: str = ""


@dataclass
class ReprocessResult:
    counts: dict[str, int] = field(default_factory=dict)
    stored: int = 0
    duplicates: int = 0
    skipped: int = 0
    # The `webhook_reprocessed` entries written, one per integration, for the admin to link to.
    entries: list[ActivityLog] = field(default_factory=list)

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


def insert_delivery(delivery: WebhookDelivery) -> None:
    """`delivery.save()` for a new delivery, as one hand-written INSERT ... RETURNING id: the
    webhook's one statement, without the ORM's per-save work (about a third of the queued
    answer's CPU, bench/bench_webhook.py), prepared on PostgreSQL (integrations.push.prepared)."""
    (delivery.pk,) = prepared.returning_row(_insert_delivery_sql(), delivery_values(delivery))
    delivery._state.adding = False


def delivery_columns() -> list[str]:
    """The columns a new delivery's INSERT names, in `delivery_values`' order (all but the id)."""
    return [f.column for f, _ in _delivery_fields()]


def delivery_values(delivery: WebhookDelivery) -> list[Any]:
    """A new delivery's column values, each through its field's own conversion, but for text
    and integer columns, whose values the driver takes as they are (Django wraps each integer in
    a typed psycopg object, which only server-side binding needs: a sixth of the queued
    answer's CPU, bench/bench_webhook.py profiled)."""
    db = connections[DEFAULT_DB_ALIAS]  # once: each `connection.x` is a thread-local lookup
    values = []
    for f, plain in _delivery_fields():
        value = getattr(delivery, f.attname) if plain else f.pre_save(delivery, add=True)
        if isinstance(value, DatabaseDefault):  # left to the database: its value, as it stores
            value = getattr(f.db_default, "value", f.db_default)
            setattr(delivery, f.attname, value)
        values.append(value if plain else f.get_db_prep_save(value, db))
    return values


# Columns whose Python values are what the database stores (str, int, None): no conversion, and
# Field.pre_save is getattr for them.
_PLAIN = {
    "CharField", "TextField", "IntegerField", "SmallIntegerField", "BigIntegerField",
    "PositiveIntegerField", "PositiveSmallIntegerField", "PositiveBigIntegerField",
}  # fmt: skip


@functools.cache
def _delivery_fields() -> list[tuple[Any, bool]]:
    """The delivery's columns but the id, each with whether its value goes as it is."""
    fields = [f for f in WebhookDelivery._meta.concrete_fields if not f.primary_key]
    return [(f, f.get_internal_type() in _PLAIN or f.is_relation) for f in fields]


def _insert_delivery_sql() -> str:
    global _INSERT_DELIVERY
    if _INSERT_DELIVERY is None:
        quote = connection.ops.quote_name
        columns = ", ".join(quote(column) for column in delivery_columns())
        placeholders = ", ".join(["%s"] * len(delivery_columns()))
        _INSERT_DELIVERY = (
            f"INSERT INTO {quote(WebhookDelivery._meta.db_table)} ({columns}) "  # noqa: S608
            f"VALUES ({placeholders}) RETURNING {quote(WebhookDelivery._meta.pk.column)}"
        )
    return _INSERT_DELIVERY


_INSERT_DELIVERY: str | None = None


def process_delivery(
    delivery: WebhookDelivery,
    *,
    integration: DeviceIntegration | None = None,
    activity_id: int | None = None,
    answering: bool = False,
) -> DeliveryResult:
    """Parse and store one delivery, and record the outcome on its row.

    Readings link to activity entry `activity_id`; readings and outcome commit together. A
    DatabaseError is recorded (when the database still answers) and raised again, so the view
    answers 503 and Golioth retries; anything else is recorded with its traceback. `answering`:
    the webhook answers the sender with the outcome, whose HTTP status the row records.
    """
    integration = integration or delivery.integration
    try:
        sync_settings = integration.sync_settings
        read = read_delivery(delivery, sync_settings=sync_settings)
        if isinstance(read, DeliveryResult):
            return conclude_delivery(delivery, read, answering=answering)
        delivery.device_external_id = read.device_external_id
        with transaction.atomic():
            result = store_reading(
                read,
                integration=integration,
                sync_settings=sync_settings,
                activity_id=activity_id,
            )
            return conclude_delivery(delivery, result, answering=answering)
    except DatabaseError as exc:
        record_crash(delivery, exc, answering=answering)
        raise
    except Exception as exc:
        logger.exception("webhook: delivery %s failed", delivery.pk)
        return record_crash(delivery, exc, answering=answering)


def answer_status(result: DeliveryResult) -> int:
    """The HTTP status the webhook answers a delivery's result with (integrations.push.view)."""
    if result.outcome in (Outcome.PROCESSED, Outcome.DUPLICATE, Outcome.IGNORED):
        return 200
    if result.outcome == Outcome.REJECTED:
        # Kept, but nothing a retry would change: 202, so Golioth does not resend it forever;
        # a reading too large to store is 413, as a body too large is.
        return 413 if result.failure == "too-large" else 202
    failures = {"internal": 500, "database": 503, "media-type": 415, "body-size": 413}
    return failures.get(result.failure, 400)


def read_delivery(
    delivery: WebhookDelivery, *, sync_settings: SyncSettings
) -> WebhookReading | DeliveryResult:
    """The reading a delivery holds, or the result that ends it without storing anything:
    failed (not a reading: 400 or 415) or ignored (not a stream reading, a path not mirrored)."""
    try:
        message = parse_webhook(
            bytes(delivery.body),
            content_type=delivery.content_type,
            headers=CaseInsensitiveMapping(delivery.headers or {}),
            received_at=delivery.received_at,
            nest_payload=sync_settings.payloads_nested_under_path,
        )
    except PayloadError as exc:
        failure = "media-type" if isinstance(exc, UnsupportedMediaType) else "input"
        return DeliveryResult(Outcome.FAILED, reason=str(exc), failure=failure)
    if message.reading is None:
        return DeliveryResult(Outcome.IGNORED, reason=message.ignored)
    if not sync_settings.mirrors_path(message.reading.path):
        reason = f"path {data_path(message.reading.path)} is not mirrored"
        return DeliveryResult(Outcome.IGNORED, reason=reason)
    return message.reading


def record_crash(
    delivery: WebhookDelivery, exc: BaseException, *, answering: bool
) -> DeliveryResult:
    """Record `exc` (being handled) on the delivery's row as its failure, with the traceback."""
    result = DeliveryResult(
        Outcome.FAILED,
        reason=f"{type(exc).__name__}: {exc}".splitlines()[0][:500],
        failure="database" if isinstance(exc, DatabaseError) else "internal",
    )
    try:
        conclude_delivery(delivery, result, trace=traceback.format_exc(), answering=answering)
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
    if foreign := foreign_project(reading, integration):
        return foreign
    seen = _see_device(integration, reading, sync_settings=sync_settings)
    if seen is None and sync_settings.webhook_creates_devices:
        # Golioth sends no device name in a webhook; the next pull fills it in.
        Device.objects.get_or_create(
            integration=integration,
            external_id=reading.device_external_id,
            defaults={"name": reading.device_external_id},
        )
        seen = _see_device(integration, reading, sync_settings=sync_settings)
    if seen is None:
        return unknown_device(reading)
    device_pk, approximate_stored = seen
    ingested = ingest_readings(
        [as_reading(reading, device_pk)],
        integration_id=integration.pk,
        source=TelemetryRecord.Source.WEBHOOK,
        activity_id=activity_id,
        time_tolerance=timedelta(seconds=sync_settings.time_tolerance_seconds),
        advance_last_seen=False,
        approximate_stored=approximate_stored,
    )
    return ingest_outcome(ingested)


def foreign_project(
    reading: WebhookReading, integration: DeviceIntegration
) -> DeliveryResult | None:
    if reading.project_id in ("", integration.project_id):
        return None
    reason = f"project {reading.project_id!r} is not this integration's project"
    return DeliveryResult(Outcome.REJECTED, reason=reason[:300])


def unknown_device(reading: WebhookReading) -> DeliveryResult:
    reason = (
        f"unknown device {reading.device_external_id!r}: this integration does not add "
        "devices from webhooks (webhookCreatesDevices is off)"
    )
    return DeliveryResult(Outcome.REJECTED, reason=reason)


def as_reading(reading: WebhookReading, device_pk: int) -> Reading:
    return Reading(
        device_pk=device_pk,
        device_external_id=reading.device_external_id,
        timestamp=reading.timestamp,
        payload=reading.payload,
        path=reading.path,
        time_exact=reading.time_exact,
    )


def ingest_outcome(ingested: IngestResult) -> DeliveryResult:
    stored, duplicates = ingested.inserted, ingested.duplicates
    if stored:
        return DeliveryResult(Outcome.PROCESSED, stored, duplicates)
    if ingested.rejected:
        # Not stored, and not a duplicate either: kept for a re-process once gsync can store it.
        failure = "too-large" if ingested.too_large else ""
        reason = ingested.rejected_reason
        return DeliveryResult(Outcome.REJECTED, stored, duplicates, reason, failure)
    return DeliveryResult(Outcome.DUPLICATE, stored, duplicates)


def _see_device(
    integration: DeviceIntegration, reading: WebhookReading, *, sync_settings: SyncSettings
) -> tuple[int, bool] | None:
    """Move the device's last_seen forward to the reading, its status following it, and return
    its pk and whether it has stored rows whose time is approximate (ingest's reconciliation
    needs a search only then): one statement, the lookup being the update (`see_device_sql`).
    None when the integration has no such device."""
    sql, params = see_device_sql(integration, reading, sync_settings=sync_settings)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return (row[0], bool(row[1])) if row else None


def see_device_sql(
    integration: DeviceIntegration, reading: WebhookReading, *, sync_settings: SyncSettings
) -> tuple[str, dict[str, Any]]:
    """The UPDATE of `_see_device` and its parameters: it returns `id` and `approximate`.

    The status is `telemetry.status.status_sql` of the new last_seen. The approximate rows are
    found in the `telemetry_inexact_time` partial index. Raw SQL because the ORM's UPDATE returns
    no columns (RETURNING: PostgreSQL, SQLite >= 3.35).
    """
    devices, readings = Device._meta.db_table, TelemetryRecord._meta.db_table
    newest = "CASE WHEN last_seen > %(seen)s THEN last_seen ELSE %(seen)s END"
    sql = (
        f"UPDATE {devices} SET last_seen = {newest}, status = {status_sql(newest)} "  # noqa: S608
        "WHERE integration_id = %(integration)s AND external_id = %(device)s "
        f"RETURNING id, EXISTS (SELECT 1 FROM {readings} "
        f"WHERE {readings}.device_id = {devices}.id AND NOT {readings}.time_exact) AS approximate"
    )
    params = {
        "seen": connection.ops.adapt_datetimefield_value(reading.timestamp),
        "offline_cutoff": offline_cutoff(
            now=timezone.now(), offline_after=sync_settings.offline_after
        ),
        "integration": integration.pk,
        "device": reading.device_external_id,
    }
    return sql, params


def conclude_delivery(
    delivery: WebhookDelivery, result: DeliveryResult, *, trace: str = "", answering: bool = False
) -> DeliveryResult:
    """Record the outcome on the delivery row (with the HTTP status when `answering`: a
    re-process answers nobody, and keeps the status the sender got).

    Raw SQL: on the webhook's hot path the ORM's UPDATE costs three times the round trip.
    """
    delivery.outcome = result.outcome
    delivery.error = result.reason
    delivery.traceback = trace
    delivery.readings_stored = result.stored
    delivery.readings_duplicate = result.duplicates
    delivery.processed_at = timezone.now()
    if answering:
        delivery.response_status = answer_status(result)
    sql = (
        f"UPDATE {WebhookDelivery._meta.db_table} SET outcome = %s, error = %s, "  # noqa: S608
        "traceback = %s, readings_stored = %s, readings_duplicate = %s, processed_at = %s, "
        "attempts = attempts + 1, response_status = %s, device_external_id = %s WHERE id = %s"
    )
    processed_at = connection.ops.adapt_datetimefield_value(delivery.processed_at)
    params: list[Any] = [result.outcome, result.reason, trace, result.stored, result.duplicates]
    params += [processed_at, delivery.response_status, delivery.device_external_id]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, delivery.pk])
    return result


# --- re-processing, pruning ----------------------------------------------------------------------


def reprocess_deliveries(
    deliveries: Iterable[WebhookDelivery], *, trigger: str = ActivityLog.Trigger.ADMIN
) -> ReprocessResult:
    """Run stored deliveries through the parser again (after a fix, or a settings change).

    Only failed, rejected, ignored and never-finished deliveries are re-run; processed ones are
    skipped. One `webhook_reprocessed` activity entry per integration holds the counts.
    """
    result = ReprocessResult()
    entries: dict[int, tuple[ActivityLog, ReprocessResult]] = {}
    try:
        for delivery in deliveries:
            if delivery.outcome not in REPROCESSABLE:
                result.skipped += 1
                continue
            entry, own = entries.get(delivery.integration_id) or _reprocess_entry(
                delivery.integration, trigger
            )
            entries[delivery.integration_id] = (entry, own)
            outcome = process_delivery(delivery, activity_id=entry.pk)
            result.add(outcome)
            own.add(outcome)
    finally:
        for entry, own in entries.values():
            _finish_reprocess_entry(entry, own)
            result.entries.append(entry)
    return result


def _reprocess_entry(
    integration: DeviceIntegration, trigger: str
) -> tuple[ActivityLog, ReprocessResult]:
    entry = ActivityLog.objects.start(
        integration,
        activity_type=ActivityLog.ActivityType.WEBHOOK_REPROCESSED,
        trigger=trigger,
        message="Re-processing webhook deliveries.",
    )
    return entry, ReprocessResult()


def _finish_reprocess_entry(entry: ActivityLog, own: ReprocessResult) -> None:
    bad = own.failed + own.counts.get(Outcome.REJECTED, 0)
    ActivityLog.objects.finish(
        entry,
        status=ActivityLog.Status.PARTIAL if bad else ActivityLog.Status.SUCCESS,
        message=own.describe(),
        deliveries=own.total,
        readings_fetched=own.counts.get(Outcome.PROCESSED, 0)
        + own.counts.get(Outcome.DUPLICATE, 0),
        readings_inserted=own.stored,
        readings_duplicate=own.duplicates,
    )
