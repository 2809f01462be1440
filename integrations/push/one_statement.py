"""The synchronous webhook's common case in one statement (PostgreSQL).

The general path (integrations.push.deliveries) costs six round trips and two commits a delivery:
the delivery's INSERT committed on its own, then BEGIN, the device's UPDATE, the reading's INSERT,
the outcome's UPDATE, COMMIT. Most deliveries need none of that care: a reading of a known device,
with Golioth's own time, of a device that holds no approximate-time row. For those one INSERT
with data-modifying CTEs moves the device's last_seen and status, stores the reading (ingest's
own row, key and ON CONFLICT: telemetry.ingest.exact_reading_insert) and stores the delivery
with its outcome, in one round trip and one commit, prepared once per connection (integrations.
push.prepared: planning this statement costs more than running it). The CTEs share one snapshot
and run in order of need: `seen` (the device's UPDATE), `stored` (the reading, only if `seen`
found a device without approximate rows), `verdict`, then the delivery.

What the statement cannot settle it leaves to the general path on the delivery it stored
`received` (unknown device: it may be added from webhooks; approximate rows to reconcile), as a
request killed between the two would be (integrations.push.queue picks those up). What it does
not take never reaches the database here (SQLite; not a reading; another project; Golioth's time
missing; a payload ingest refuses): the general path does it all. If the statement fails,
nothing of it is stored and the general path's answer follows: on a timeout the delivery is kept
failed with why and answered 503 (integrations.push.backpressure), on a lost database just
answered 503, and any other database error (a deadlock, a constraint) sends it down the general
path, which keeps it with the error.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.utils import timezone

from integrations.models import DeviceIntegration, WebhookDelivery
from integrations.push import backpressure, prepared
from integrations.push.deliveries import (
    DeliveryResult,
    answer_status,
    as_reading,
    delivery_columns,
    delivery_values,
    foreign_project,
    insert_delivery,
    read_delivery,
    record_crash,
    see_device_sql,
)
from telemetry.ingest import exact_reading_insert
from telemetry.models import TelemetryRecord

logger = logging.getLogger(__name__)

Outcome = WebhookDelivery.Outcome
# What the webhook answers a stored reading or a duplicate (both 200), from the one rule.
_ANSWERED = answer_status(DeliveryResult(Outcome.PROCESSED))
# `verdict.stored`: NULL when the general path is to finish (no device, or approximate rows),
# else how many readings the statement stored (0: a duplicate).
_SETTLED = {
    "outcome": (
        f"CASE WHEN v.stored IS NULL THEN '{Outcome.RECEIVED.value}' "
        f"WHEN v.stored > 0 THEN '{Outcome.PROCESSED.value}' ELSE '{Outcome.DUPLICATE.value}' END"
    ),
    "readings_stored": "coalesce(v.stored, 0)",
    "readings_duplicate": "CASE WHEN v.stored = 0 THEN 1 ELSE 0 END",
    "processed_at": "CASE WHEN v.stored IS NULL THEN NULL ELSE %(processed_at)s::timestamptz END",
    "attempts": "CASE WHEN v.stored IS NULL THEN 0 ELSE 1 END",
    "response_status": f"CASE WHEN v.stored IS NULL THEN NULL ELSE {_ANSWERED} END",
}


def store_at_once(
    delivery: WebhookDelivery, *, integration: DeviceIntegration, activity_id: int | None
) -> DeliveryResult | None:
    """Store a new (unsaved) delivery and its reading in one statement: the result, or None when
    the general path is to go on, with the delivery stored `received` (its pk set) or not stored
    at all (its pk None)."""
    if connection.vendor != "postgresql":
        return None
    statement = _statement(delivery, integration=integration, activity_id=activity_id)
    if statement is None:
        return None
    sql, params = statement
    try:
        delivery.pk, outcome, stored = prepared.returning_row(sql, params)
    except DatabaseError as exc:
        # Nothing of the statement is stored. A timeout: 503 (integrations.push.backpressure).
        if isinstance(exc, OperationalError) and backpressure.timed_out(exc):
            _keep_failed(delivery, exc)
            raise
        if isinstance(exc, InterfaceError) or _connection_lost():
            raise  # 503: the general path would fail the same way
        logger.warning("webhook: one-statement store failed (%s); the general path takes it", exc)
        return None
    delivery._state.adding = False
    if outcome == Outcome.RECEIVED:
        return None
    delivery.outcome, delivery.attempts = outcome, 1
    delivery.readings_stored, delivery.readings_duplicate = stored, 1 - stored
    result = DeliveryResult(outcome, stored=stored, duplicates=1 - stored)
    delivery.processed_at, delivery.response_status = params["processed_at"], answer_status(result)
    return result


def _connection_lost() -> bool:
    raw = connection.connection
    return raw is None or raw.closed


def _keep_failed(delivery: WebhookDelivery, exc: DatabaseError) -> None:
    """Keep the delivery, failed with why, as the general path would have (its INSERT comes
    first there): staff can re-process it if the sender does not retry."""
    try:
        insert_delivery(delivery)
    except DatabaseError:
        return  # not even that: the answer is 503 all the same
    record_crash(delivery, exc, answering=True)


def _statement(
    delivery: WebhookDelivery, *, integration: DeviceIntegration, activity_id: int | None
) -> tuple[str, dict[str, Any]] | None:
    sync_settings = integration.sync_settings
    try:
        read = read_delivery(delivery, sync_settings=sync_settings)
    except Exception:
        return None  # the general path records the traceback
    if isinstance(read, DeliveryResult) or not read.time_exact:
        return None
    if foreign_project(read, integration):
        return None
    delivery.device_external_id = read.device_external_id
    seen_sql, params = see_device_sql(integration, read, sync_settings=sync_settings)
    reading = exact_reading_insert(
        as_reading(read, device_pk=0),  # the statement's `seen.id` is the device
        integration_id=integration.pk,
        source=TelemetryRecord.Source.WEBHOOK,
        activity_id=activity_id,
        device_id="seen.id",
        rows_from="FROM seen WHERE NOT seen.approximate",
    )
    if reading is None:
        return None
    stored_sql, reading_params = reading
    params.update(reading_params, processed_at=timezone.now())
    columns, values = [], []
    for i, (column, value) in enumerate(
        zip(delivery_columns(), delivery_values(delivery), strict=True)
    ):
        columns.append(connection.ops.quote_name(column))
        if column in _SETTLED:
            values.append(f"(SELECT {_SETTLED[column]} FROM verdict v)")  # noqa: S608
        else:
            values.append(f"%(delivery_{i})s")
            params[f"delivery_{i}"] = value
    # The values are bound; the SQL is gsync's own.
    sql = (
        f"WITH seen AS ({seen_sql}), stored AS ({stored_sql}), "  # noqa: S608
        "verdict AS (SELECT CASE WHEN EXISTS (SELECT 1 FROM seen WHERE NOT seen.approximate) "
        "THEN (SELECT count(*) FROM stored) END AS stored) "
        f"INSERT INTO {WebhookDelivery._meta.db_table} ({', '.join(columns)}) "
        f"VALUES ({', '.join(values)}) RETURNING id, outcome, readings_stored"
    )
    return sql, params
