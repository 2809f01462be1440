from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, transaction

from integrations.models import ActivityLog
from telemetry.ingest import (
    COPY_MIN_ROWS,
    IngestResult,
    Reading,
    count_new_readings,
    ingest_readings,
)
from telemetry.keys import dedup_key
from telemetry.models import TelemetryRecord

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def reading(device, seconds: float = 0, payload=None, *, exact: bool = True) -> Reading:
    return Reading(
        device_pk=device.pk,
        device_external_id=device.external_id,
        timestamp=T0 + timedelta(seconds=seconds),
        payload=payload if payload is not None else {"temp": 21.5, "seq": seconds},
        time_exact=exact,
    )


@pytest.fixture
def device(integration, make_device):
    return make_device(integration, "686d5da09c3ca8d766c1672b")


def test_ingest_stores_each_reading_once(integration, device):
    readings = [reading(device, s) for s in range(5)]

    first = ingest_readings(readings, integration_id=integration.pk, source="sync")
    again = ingest_readings(readings + readings, integration_id=integration.pk, source="webhook")

    assert (first.inserted, first.duplicates) == (5, 0)
    assert (again.inserted, again.duplicates) == (0, 10)
    assert TelemetryRecord.objects.count() == 5
    assert set(TelemetryRecord.objects.values_list("source", flat=True)) == {"sync"}


def test_ingest_keeps_microseconds_and_payload(integration, device):
    ingest_readings(
        [reading(device, 0, {"b": 1, "a": [1.5, None]})],
        integration_id=integration.pk,
        source="sync",
    )

    row = TelemetryRecord.objects.get()
    assert row.device_timestamp == T0
    assert row.telemetry == {"a": [1.5, None], "b": 1}
    assert row.time_exact is True


def test_ingest_same_payload_at_other_time_is_a_new_reading(integration, device):
    result = ingest_readings(
        [reading(device, 0, {"x": 1}), reading(device, 1, {"x": 1})],
        integration_id=integration.pk,
        source="sync",
    )
    assert result.inserted == 2


def test_ingest_batches_count_across_batch_boundaries(integration, device):
    readings = [reading(device, s) for s in range(25)]
    result = ingest_readings(
        readings + readings[:7], integration_id=integration.pk, source="sync", batch_size=10
    )
    assert (result.inserted, result.duplicates) == (25, 7)
    assert TelemetryRecord.objects.count() == 25


def test_ingest_moves_last_seen_forward_only(integration, device):
    ingest_readings(
        [reading(device, 10), reading(device, 3)], integration_id=integration.pk, source="sync"
    )
    device.refresh_from_db()
    assert device.last_seen == T0 + timedelta(seconds=10)

    ingest_readings([reading(device, 1)], integration_id=integration.pk, source="sync")
    device.refresh_from_db()
    assert device.last_seen == T0 + timedelta(seconds=10)


def test_ingest_corrects_an_approximate_time_instead_of_doubling(integration, device):
    payload = {"temp": 30}
    ingest_readings(
        [reading(device, 40, payload, exact=False)], integration_id=integration.pk, source="webhook"
    )

    result = ingest_readings(
        [reading(device, 0, payload)], integration_id=integration.pk, source="sync"
    )

    row = TelemetryRecord.objects.get()
    assert (result.inserted, result.corrected) == (0, 1)
    assert row.device_timestamp == T0
    assert row.time_exact is True
    assert row.source == "webhook"


def test_ingest_approximate_copy_of_a_stored_reading_is_a_duplicate(integration, device):
    payload = {"temp": 30}
    ingest_readings([reading(device, 0, payload)], integration_id=integration.pk, source="sync")

    result = ingest_readings(
        [reading(device, 50, payload, exact=False)], integration_id=integration.pk, source="webhook"
    )

    assert (result.inserted, result.duplicates) == (0, 1)
    assert TelemetryRecord.objects.count() == 1


def test_ingest_does_not_correct_beyond_the_tolerance(integration, device):
    payload = {"temp": 30}
    ingest_readings(
        [reading(device, 500, payload, exact=False)],
        integration_id=integration.pk,
        source="webhook",
    )
    ingest_readings([reading(device, 0, payload)], integration_id=integration.pk, source="sync")

    assert TelemetryRecord.objects.count() == 2


def test_database_refuses_a_duplicate_dedup_key(integration, device):
    ingest_readings([reading(device, 0)], integration_id=integration.pk, source="sync")
    row = TelemetryRecord.objects.get()
    row.pk = None
    with pytest.raises(IntegrityError), transaction.atomic():
        row.save()


def test_ingest_counts_an_unstorable_payload_rejected_not_duplicate(integration, device):
    readings = [reading(device, 0), reading(device, 1, {"count": 10**5000}), reading(device, 2)]

    result = ingest_readings(readings, integration_id=integration.pk, source="pull")

    assert (result.inserted, result.duplicates, result.rejected) == (2, 0, 1)
    assert "4300 digits" in result.rejected_reason
    assert TelemetryRecord.objects.count() == 2


def test_ingest_dry_run_counts_an_unstorable_payload_rejected(integration, device):
    readings = [reading(device, 0, {"count": 10**5000}), reading(device, 1)]

    result = count_new_readings(readings, integration_id=integration.pk)

    assert (result.inserted, result.duplicates, result.rejected) == (1, 0, 1)


def test_ingest_refuses_a_payload_over_the_size_limit(integration, device, settings):
    settings.GSYNC_MAX_READING_BYTES = 1000
    readings = [reading(device, 0, {"text": "a" * 2000}), reading(device, 1, {"text": "a" * 900})]

    result = ingest_readings(readings, integration_id=integration.pk, source="pull")

    assert (result.inserted, result.duplicates, result.rejected, result.too_large) == (1, 0, 1, 1)
    assert "1000-byte" in result.rejected_reason
    assert [
        len(t["text"]) for t in TelemetryRecord.objects.values_list("telemetry", flat=True)
    ] == [900]


def test_ingest_of_a_bulk_batch_stores_every_column_and_each_readings_fate(integration, device):
    # COPY_MIN_ROWS readings or more take PostgreSQL's COPY path: text that COPY escapes
    # (backslash, tab, newline) must arrive as sent, with the batch's own columns.
    tricky = {"note": 'tab\there\\ back\nline "é" \u2028', "n": None}
    readings = [reading(device, s) for s in range(COPY_MIN_ROWS)]
    moment = T0 + timedelta(seconds=3)
    readings[3] = Reading(device.pk, device.external_id, moment, tricky, path="a\tb\\c\nd")
    activity = ActivityLog.objects.start(integration, activity_type="backfill")
    outcomes: list[IngestResult] = []

    result = ingest_readings(
        readings + readings[:2],
        integration_id=integration.pk,
        source="backfill",
        activity_id=activity.pk,
        per_reading=outcomes,
    )

    assert (result.inserted, result.duplicates) == (COPY_MIN_ROWS, 2)
    assert [o.inserted for o in outcomes] == [1] * COPY_MIN_ROWS + [0, 0]
    assert [o.duplicates for o in outcomes] == [0] * COPY_MIN_ROWS + [1, 1]
    row = TelemetryRecord.objects.get(device_timestamp=moment)
    assert (row.telemetry, row.path, row.source) == (tricky, "a\tb\\c\nd", "backfill")
    assert (row.integration_id, row.activity_id, row.time_exact) == (
        integration.pk,
        activity.pk,
        True,
    )
    assert row.dedup_key == dedup_key(
        integration_id=integration.pk,
        device_external_id=device.external_id,
        timestamp=moment,
        payload=tricky,
    )
    assert TelemetryRecord.objects.filter(received_at__isnull=False).count() == COPY_MIN_ROWS


def test_ingest_stores_the_batches_read_before_the_readings_fail(integration, device):
    def readings():
        yield from (reading(device, s) for s in range(25))
        raise ConnectionError("page 3 did not come")

    with pytest.raises(ConnectionError):
        ingest_readings(readings(), integration_id=integration.pk, source="sync", batch_size=10)

    assert TelemetryRecord.objects.count() == 20
