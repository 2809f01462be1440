"""Reconciliation over real HTTP: Golioth's counts per device-hour against the mirror's."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from integrations.golioth.simulator.api import error_body
from integrations.golioth.simulator.server import _Reply
from integrations.models import ActivityLog, ConsistentBucket, DeviceIntegration
from integrations.pull.reconcile import reconcile_integration
from integrations.pull.sync import sync_integration
from telemetry.keys import canonical_json
from telemetry.models import TelemetryRecord

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def mirror(integration: DeviceIntegration) -> list[tuple]:
    rows = TelemetryRecord.objects.filter(integration=integration).values_list(
        "device__external_id", "device_timestamp", "telemetry"
    )
    return sorted((d, t, canonical_json(p)) for d, t, p in rows)


def truth(golioth, start=None, end=None) -> list[tuple]:
    return sorted(
        (r.device_external_id, r.timestamp, canonical_json(r.payload))
        for r in golioth.readings(start, end)
    )


@pytest.fixture
def synced(golioth, golioth_integration):
    """60 devices, 12 readings each over the last 6 hours, pulled once (cursor at NOW - 30 s)."""
    fleet = golioth.seed_fleet(
        60, 12, start=NOW - timedelta(hours=6), end=NOW - timedelta(minutes=5)
    )
    golioth_integration.settings = {
        "maxRequestsPerSecond": 1000,
        "backfillFrom": (NOW - timedelta(hours=6)).isoformat(),
    }
    golioth_integration.save()
    outcome = sync_integration(golioth_integration, now=NOW)
    assert outcome.status == "success", outcome.error
    return [d for d in fleet if d.firmware_version]


def buffered_upload(golioth, device, *, start: datetime, readings: int) -> None:
    """A device that was offline uploads its buffer: readings with their own, older times."""
    for n in range(readings):
        golioth.add_reading(device.id, start + timedelta(minutes=5 * n), {"buffered": n})


def test_reconcile_recovers_backdated_uploads_the_pull_moved_past(
    golioth, golioth_integration, synced
):
    # An hour of readings from 4 h ago arrives after the pull read that window.
    for device in synced[:3]:
        buffered_upload(golioth, device, start=NOW - timedelta(hours=4), readings=12)
    again = sync_integration(golioth_integration, now=NOW + timedelta(minutes=5))
    assert again.inserted == 0  # the pull's window has moved on: it cannot see them
    golioth.reset_counters()

    outcome = reconcile_integration(golioth_integration, now=NOW + timedelta(minutes=5))

    assert outcome.status == "success", outcome.error
    assert outcome.recovered == 36
    assert outcome.buckets_missing >= 3  # 12 readings 5 minutes apart span 1-2 hours each
    end = outcome.window_end
    stored = set(mirror(golioth_integration))
    assert [r for r in truth(golioth, None, end) if r not in stored] == []
    golioth_integration.refresh_from_db()
    assert golioth_integration.verified_through == end
    entry = ActivityLog.objects.get(activity_type="reconcile")
    assert entry.status == "success"
    assert entry.readings_inserted == 36
    assert entry.metadata["buckets_missing"] == outcome.buckets_missing
    # The cost the issue names: the count pages, plus the repair pages.
    device_hours = outcome.buckets_checked
    assert outcome.api_calls <= math.ceil(device_hours / 100) + 2 * outcome.buckets_missing


def test_reconcile_a_complete_mirror_costs_only_the_counts(golioth, golioth_integration, synced):
    golioth.reset_counters()

    outcome = reconcile_integration(golioth_integration, now=NOW)

    assert outcome.status == "success", outcome.error
    assert (outcome.buckets_missing, outcome.recovered, outcome.surplus_buckets) == (0, 0, 0)
    assert outcome.buckets_checked > 60
    assert outcome.api_calls == math.ceil(outcome.buckets_checked / 100)


def test_reconcile_reports_surplus_and_never_deletes(golioth, golioth_integration, synced):
    record = TelemetryRecord.objects.filter(
        integration=golioth_integration, device_timestamp__lt=NOW - timedelta(hours=2)
    ).first()
    golioth.store._lock.acquire()
    try:  # the reading is deleted upstream: gsync now holds more than Golioth
        store = golioth.store
        from integrations.golioth.simulator.micros import to_micros

        micros = to_micros(record.device_timestamp)
        row = next(i for i in range(len(store._times)) if store._times[i] == micros)
        del store._times[row], store._devs[row], store._data[row]
        store._version += 1
    finally:
        golioth.store._lock.release()
    before = TelemetryRecord.objects.count()

    outcome = reconcile_integration(golioth_integration, now=NOW)

    assert outcome.status == "success"
    assert (outcome.surplus_buckets, outcome.surplus_readings) == (1, 1)
    assert TelemetryRecord.objects.count() == before


def test_reconcile_converges_when_golioth_holds_a_reading_twice(
    golioth, golioth_integration, synced
):
    # Two pipelines delivering to LightDB Stream store one reading twice.
    reading = golioth.readings(NOW - timedelta(hours=3), NOW)[0]
    golioth.add_reading(reading.device_external_id, reading.timestamp, reading.payload)

    first = reconcile_integration(golioth_integration, now=NOW)
    golioth.reset_counters()
    second = reconcile_integration(golioth_integration, now=NOW)

    assert (first.buckets_missing, first.buckets_consistent, first.recovered) == (1, 1, 0)
    assert first.status == "success"
    assert ConsistentBucket.objects.count() == 1
    # Remembered: the next reconcile reads no repair pages for it.
    assert (second.buckets_missing, second.buckets_consistent) == (0, 1)
    assert second.api_calls == math.ceil(second.buckets_checked / 100)


def test_reconcile_dry_run_reports_and_writes_nothing(golioth, golioth_integration, synced):
    buffered_upload(golioth, synced[0], start=NOW - timedelta(hours=4), readings=6)
    before = TelemetryRecord.objects.count()

    outcome = reconcile_integration(golioth_integration, now=NOW, dry_run=True)

    assert outcome.readings_missing == 6
    assert TelemetryRecord.objects.count() == before
    assert not ActivityLog.objects.filter(activity_type="reconcile").exists()


def test_reconcile_falls_back_to_rereading_when_golioth_refuses_counts(
    golioth, golioth_integration, synced
):
    buffered_upload(golioth, synced[0], start=NOW - timedelta(hours=4), readings=6)
    answer = golioth._answer

    def refuse_aggregates(handler, kind, args, query, body):
        # A Golioth that does not take `agg` answers 400 with a gRPC body (a guess of how).
        if kind == "stream" and b'"agg"' in body:
            return _Reply(400, error_body(3, "unsupported aggregation"))
        return answer(handler, kind, args, query, body)

    golioth._answer = refuse_aggregates

    outcome = reconcile_integration(golioth_integration, now=NOW)

    assert outcome.status == "success", outcome.error
    assert "unsupported aggregation" in outcome.fallback
    assert outcome.recovered == 6
    entry = ActivityLog.objects.get(activity_type="reconcile")
    assert "re-read the lookback" in entry.message


def test_reconcile_command_checks_named_integrations(golioth, golioth_integration, synced):
    buffered_upload(golioth, synced[0], start=NOW - timedelta(hours=2), readings=3)
    out = StringIO()

    since, until = (NOW - timedelta(hours=6)).isoformat(), NOW.isoformat()
    call_command(
        "reconcile", golioth_integration.name, "--since", since, "--until", until, stdout=out
    )

    assert f"{golioth_integration.name}: success" in out.getvalue()
    assert "3 recovered" in out.getvalue()


def test_reconcile_command_refuses_bad_input(golioth_integration):
    with pytest.raises(CommandError, match="no integration named 'nope'"):
        call_command("reconcile", "nope", stdout=StringIO())
    with pytest.raises(CommandError, match="is not a time"):
        call_command("reconcile", golioth_integration.name, "--since", "yesterday")
    with pytest.raises(CommandError, match="name one or more"):
        call_command("reconcile")


@pytest.mark.django_db
def test_health_warns_when_verification_falls_behind(make_integration, settings):
    from django.utils import timezone

    from integrations.admin.dashboard import integration_health

    settings.GSYNC_VERIFY_MAX_LAG_HOURS = 6
    now = timezone.now()
    integration = make_integration(settings={"syncIntervalSeconds": 300})
    DeviceIntegration.objects.filter(pk=integration.pk).update(
        sync_cursor=now,
        last_sync_at=now,
        last_queued_at=now,
        last_sync_status="success",
        verified_through=now - timedelta(hours=2),
    )
    integration.refresh_from_db()
    assert integration_health(integration, now=now).state == "ok"

    DeviceIntegration.objects.filter(pk=integration.pk).update(
        verified_through=now - timedelta(hours=10)
    )
    integration.refresh_from_db()
    health = integration_health(integration, now=now)
    assert health.state == "warning"
    assert "Verified complete only through" in health.reason

    integration.settings = {"reconcileIntervalMinutes": 0}  # staff turned reconciling off
    assert integration_health(integration, now=now).state == "ok"
