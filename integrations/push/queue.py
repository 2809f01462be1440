"""The queued push path: ingest workers store queued webhook deliveries in batches.

The view (integrations/push/view.py) stores each delivery `queued` and answers 202; a worker
(`manage.py ingest_worker`) claims up to a batch of them with `SELECT ... FOR UPDATE SKIP LOCKED`,
stores their readings with one `telemetry.ingest` call per integration and minute (COPY on
PostgreSQL), moves their devices' last_seen in one UPDATE per integration, and records every
delivery's outcome in one more, all inside the claim's transaction. So any number of workers on
any number of machines share the queue with nothing else to run, and a worker that dies mid-batch
leaves its batch queued: its transaction rolls back and its row locks go with it. On SQLite, whose
writers take turns, the IMMEDIATE transaction (gsync.settings) serialises the claims instead.

A batch that fails on anything but a lost database is taken again one delivery at a time
(`process_delivery`), so one bad delivery fails alone, with its traceback, and the rest are stored.
Deliveries a synchronous request stored but never finished (its web worker was killed) are
picked up too once STALE_RECEIVED old.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from integrations.golioth.webhook_payloads import WebhookReading
from integrations.models import DeviceIntegration, WebhookDelivery
from integrations.push.deliveries import (
    DeliveryResult,
    as_reading,
    conclude_delivery,
    foreign_project,
    ingest_outcome,
    process_delivery,
    read_delivery,
    unknown_device,
)
from integrations.push.minutes import forget_minute_entries, webhook_minute_entry
from telemetry.ingest import IngestResult, ingest_readings
from telemetry.models import Device, TelemetryRecord
from telemetry.status import offline_cutoff, status_sql

logger = logging.getLogger(__name__)

Outcome = WebhookDelivery.Outcome
BATCH_SIZE = 500
STALE_RECEIVED = timedelta(minutes=5)
# Rows per VALUES list of the batch's UPDATEs (SQLite binds at most 32,766 parameters).
VALUES_ROWS = 1000


def ingest_queued(*, batch_size: int = BATCH_SIZE, now: datetime | None = None) -> int:
    """Claim one batch of queued deliveries and store it; how many it held (0: none waiting)."""
    now = now or timezone.now()
    with transaction.atomic():
        batch = _claim(batch_size, now=now)
        if not batch:
            return 0
        integrations = DeviceIntegration.objects.in_bulk({d.integration_id for d in batch})
        try:
            with transaction.atomic():
                results = _store_batch(batch, integrations)
        except (OperationalError, InterfaceError):
            raise  # the database is gone: the batch stays queued for the next claim
        except Exception:
            logger.exception("ingest: a batch of %d failed; storing it one by one", len(batch))
            forget_minute_entries()  # one the batch added is rolled back with it
            _one_by_one(batch, integrations)
        else:
            conclude_deliveries(results, now=timezone.now())
    return len(batch)


def _claim(batch_size: int, *, now: datetime) -> list[WebhookDelivery]:
    # Written as the partial index delivery_pending's own condition, so it serves the claim.
    pending = WebhookDelivery.objects.filter(
        outcome__in=(Outcome.QUEUED, Outcome.RECEIVED)
    ).exclude(Q(outcome=Outcome.RECEIVED, received_at__gte=now - STALE_RECEIVED))
    claim = pending.order_by("id").select_for_update(skip_locked=True)
    return list(claim[:batch_size])


def _one_by_one(batch: list[WebhookDelivery], integrations: dict[int, DeviceIntegration]) -> None:
    for delivery in batch:
        integration = integrations[delivery.integration_id]
        entry_id = webhook_minute_entry(integration, at=delivery.received_at)
        try:
            with transaction.atomic():
                process_delivery(delivery, integration=integration, activity_id=entry_id)
        except (OperationalError, InterfaceError):
            raise
        except DatabaseError as exc:
            # The database refused this delivery alone (its savepoint is rolled back).
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            result = DeliveryResult(Outcome.FAILED, reason=reason, failure="internal")
            conclude_delivery(delivery, result)


# --- one batch -----------------------------------------------------------------------------------


def _store_batch(
    batch: list[WebhookDelivery], integrations: dict[int, DeviceIntegration]
) -> dict[int, DeliveryResult]:
    results: dict[int, DeliveryResult] = {}
    readings: dict[int, list[tuple[WebhookDelivery, WebhookReading]]] = defaultdict(list)
    for delivery in batch:
        integration = integrations[delivery.integration_id]
        read = read_delivery(delivery, sync_settings=integration.sync_settings)
        if isinstance(read, DeliveryResult):
            results[delivery.pk] = read
        elif foreign := foreign_project(read, integration):
            results[delivery.pk] = foreign
        else:
            readings[integration.pk].append((delivery, read))
    for integration_id, held in readings.items():
        results.update(_store_readings(integrations[integration_id], held))
    return results


def _store_readings(
    integration: DeviceIntegration, held: list[tuple[WebhookDelivery, WebhookReading]]
) -> dict[int, DeliveryResult]:
    sync_settings = integration.sync_settings
    devices = _see_devices(integration, [reading for _, reading in held])
    if sync_settings.webhook_creates_devices:
        unknown = {r.device_external_id for _, r in held} - devices.keys()
        if unknown:
            # Golioth sends no device name in a webhook; the next pull fills it in.
            Device.objects.bulk_create(
                [Device(integration=integration, external_id=e, name=e) for e in sorted(unknown)],
                ignore_conflicts=True,
            )
            news = [r for _, r in held if r.device_external_id in unknown]
            devices.update(_see_devices(integration, news))
    results: dict[int, DeliveryResult] = {}
    by_minute: dict[int, list[tuple[WebhookDelivery, WebhookReading]]] = defaultdict(list)
    for delivery, reading in held:
        if reading.device_external_id not in devices:
            results[delivery.pk] = unknown_device(reading)
        else:
            entry_id = webhook_minute_entry(integration, at=delivery.received_at)
            by_minute[entry_id].append((delivery, reading))
    for entry_id, group in by_minute.items():
        outcomes: list[IngestResult] = []
        ingest_readings(
            [as_reading(r, devices[r.device_external_id][0]) for _, r in group],
            integration_id=integration.pk,
            source=TelemetryRecord.Source.WEBHOOK,
            activity_id=entry_id,
            time_tolerance=timedelta(seconds=sync_settings.time_tolerance_seconds),
            advance_last_seen=False,
            approximate_stored=any(devices[r.device_external_id][1] for _, r in group),
            per_reading=outcomes,
        )
        for (delivery, _), outcome in zip(group, outcomes, strict=True):
            results[delivery.pk] = ingest_outcome(outcome)
    return results


def _see_devices(
    integration: DeviceIntegration, readings: Iterable[WebhookReading]
) -> dict[str, tuple[int, bool]]:
    """Move each device's last_seen forward to its newest reading, its status following, in one
    UPDATE; return {external id: (pk, has rows of approximate time)} for the devices found.

    The batch's form of integrations.push.deliveries._see_device (see there)."""
    newest: dict[str, datetime] = {}
    for reading in readings:
        seen = newest.get(reading.device_external_id)
        if seen is None or reading.timestamp > seen:
            newest[reading.device_external_id] = reading.timestamp
    found: dict[str, tuple[int, bool]] = {}
    items = sorted(newest.items())
    for start in range(0, len(items), VALUES_ROWS):
        found.update(_see_chunk(integration, items[start : start + VALUES_ROWS]))
    return found


def _see_chunk(
    integration: DeviceIntegration, items: list[tuple[str, datetime]]
) -> dict[str, tuple[int, bool]]:
    devices, readings = Device._meta.db_table, TelemetryRecord._meta.db_table
    params: dict[str, Any] = {
        "integration": integration.pk,
        "offline_cutoff": offline_cutoff(
            now=timezone.now(), offline_after=integration.sync_settings.offline_after
        ),
    }
    rows = []
    for i, (external_id, moment) in enumerate(items):
        params[f"e{i}"] = external_id
        params[f"t{i}"] = connection.ops.adapt_datetimefield_value(moment)
        rows.append(f"(%(e{i})s, %(t{i})s)")
    newest = f"CASE WHEN {devices}.last_seen > v.seen THEN {devices}.last_seen ELSE v.seen END"
    # Two workers whose batches share devices must lock them in one order, or each can hold a
    # row the other waits for ("deadlock detected", seen in bench/bench_webhook.py): the rows
    # are locked first, in id order (LockRows sits above the Sort). SQLite's writers take turns.
    lock = " ORDER BY d.id FOR UPDATE OF d" if connection.vendor == "postgresql" else ""
    sql = (
        f"WITH v(external_id, seen) AS (VALUES {', '.join(rows)}), "  # noqa: S608
        f"locked AS (SELECT d.id, v.seen FROM {devices} d JOIN v ON d.external_id = v.external_id "
        f"WHERE d.integration_id = %(integration)s{lock}) "
        f"UPDATE {devices} SET last_seen = {newest}, status = {status_sql(newest)} "
        f"FROM locked AS v WHERE {devices}.id = v.id "
        f"RETURNING {devices}.external_id, {devices}.id, EXISTS (SELECT 1 FROM {readings} "
        f"WHERE {readings}.device_id = {devices}.id AND NOT {readings}.time_exact)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0]: (row[1], bool(row[2])) for row in cursor.fetchall()}


def conclude_deliveries(results: dict[int, DeliveryResult], *, now: datetime) -> None:
    """Record every delivery's outcome: one UPDATE per VALUES_ROWS deliveries."""
    table = WebhookDelivery._meta.db_table
    items = sorted(results.items())
    processed_at = connection.ops.adapt_datetimefield_value(now)
    for start in range(0, len(items), VALUES_ROWS):
        chunk = items[start : start + VALUES_ROWS]
        params: list[Any] = []
        for pk, result in chunk:
            params += [pk, result.outcome, result.reason, result.stored, result.duplicates]
        values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(chunk))
        sql = (
            f"WITH v(id, outcome, error, stored, duplicate) AS (VALUES {values}) "  # noqa: S608
            f"UPDATE {table} SET outcome = v.outcome, error = v.error, traceback = '', "
            "readings_stored = v.stored, readings_duplicate = v.duplicate, processed_at = %s, "
            f"attempts = attempts + 1 FROM v WHERE {table}.id = v.id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, processed_at])
