"""Issue 8's repros: the pull keeps every reading while Golioth's data moves under it.

Each runs a real sync over HTTP against the simulator, made to do what real fleets do: readings
landing inside the window while it is paged (back-dated batch uploads), a retention delete shifting
pages the other way, and stream replies without `total`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from integrations.models import DeviceIntegration
from integrations.pull.sync import sync_integration
from telemetry.keys import canonical_json
from telemetry.models import TelemetryRecord

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
DAY_AGO = NOW - timedelta(days=1)


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


def after_stream_call(golioth, number: int, action: Callable[[], None]) -> None:
    """Run `action` once, right after Golioth answered its `number`-th stream call."""
    calls = 0
    answer = golioth._answer

    def answer_then_act(handler, kind, *args):
        nonlocal calls
        reply = answer(handler, kind, *args)
        if kind in ("stream", "device_stream"):
            calls += 1
            if calls == number:
                action()
        return reply

    golioth._answer = answer_then_act


def without_total(golioth) -> None:
    """Stream replies without `total`: the OpenAPI has it, no captured reply shows it."""
    answer = golioth._answer

    def answer_without_total(handler, kind, *args):
        reply = answer(handler, kind, *args)
        if kind in ("stream", "device_stream") and reply.status == 200:
            import json

            body = json.loads(reply.body)
            body.pop("total", None)
            reply.body = json.dumps(body).encode()
        return reply

    golioth._answer = answer_without_total


@pytest.fixture
def day_fleet(golioth, golioth_integration):
    """250 devices x 20 readings over the last day (238 connected): 48 pages."""
    fleet = golioth.seed_fleet(250, 20, start=DAY_AGO, end=NOW - timedelta(minutes=5))
    golioth_integration.settings = {
        "maxRequestsPerSecond": 1000,
        "backfillFrom": DAY_AGO.isoformat(),
    }
    golioth_integration.save()
    return [d for d in fleet if d.firmware_version]


def test_pull_keeps_the_window_when_readings_land_inside_it_mid_run(
    golioth, golioth_integration, day_fleet
):
    before = truth(golioth)

    def upload_late_readings() -> None:
        for device in day_fleet:
            golioth.add_reading(device.id, NOW - timedelta(minutes=2), {"late": True})

    after_stream_call(golioth, 2, upload_late_readings)
    first = sync_integration(golioth_integration, now=NOW)

    assert first.status == "success", first.error
    stored = set(mirror(golioth_integration))
    lost = [r for r in before if r not in stored]
    assert lost == [], f"{len(lost)} readings of the window were never stored"
    # The next run's overlap reads the late ones, whose time lies in the part already read.
    second = sync_integration(golioth_integration, now=NOW + timedelta(minutes=5))
    assert second.status == "success", second.error
    assert mirror(golioth_integration) == truth(golioth)


def test_pull_keeps_the_window_when_a_retention_delete_shifts_pages(
    golioth, golioth_integration, day_fleet
):
    cutoff = DAY_AGO + timedelta(hours=1)
    kept = truth(golioth, cutoff)

    def retention_delete() -> None:
        store = golioth.store
        with store._lock:
            from bisect import bisect_left

            from integrations.golioth.simulator.micros import to_micros

            n = bisect_left(store._times, to_micros(cutoff))
            del store._times[:n], store._devs[:n], store._data[:n]
            store._version += 1

    after_stream_call(golioth, 3, retention_delete)
    outcome = sync_integration(golioth_integration, now=NOW)

    assert outcome.status == "success", outcome.error
    stored = set(mirror(golioth_integration))
    assert [r for r in kept if r not in stored] == []


def test_pull_reads_every_page_when_replies_have_no_total(golioth, golioth_integration, day_fleet):
    without_total(golioth)

    outcome = sync_integration(golioth_integration, now=NOW)

    assert outcome.status == "success", outcome.error
    assert mirror(golioth_integration) == truth(golioth)
    assert outcome.fetched == len(truth(golioth))


def test_pull_without_total_rereads_a_window_that_moved(golioth, golioth_integration, day_fleet):
    without_total(golioth)
    before = truth(golioth)

    def upload_late_readings() -> None:
        for device in day_fleet:
            golioth.add_reading(device.id, NOW - timedelta(minutes=2), {"late": True})

    after_stream_call(golioth, 2, upload_late_readings)
    outcome = sync_integration(golioth_integration, now=NOW)

    assert outcome.status == "success", outcome.error
    stored = set(mirror(golioth_integration))
    assert [r for r in before if r not in stored] == []
    assert outcome.activity.metadata["rereads"] >= 1


def test_pull_fails_and_keeps_its_cursor_when_the_window_never_holds_still(
    golioth, golioth_integration, day_fleet
):
    answer = golioth._answer
    device = day_fleet[0]
    counter = iter(range(1_000_000))

    def always_moving(handler, kind, *args):
        reply = answer(handler, kind, *args)
        if kind == "stream":
            golioth.add_reading(device.id, NOW - timedelta(minutes=3), {"n": next(counter)})
        return reply

    golioth._answer = always_moving
    outcome = sync_integration(golioth_integration, now=NOW)

    assert outcome.status == "failed"
    assert "kept changing while it was read" in outcome.error
    golioth_integration.refresh_from_db()
    assert golioth_integration.sync_cursor is None
    assert golioth_integration.last_sync_status == "failed"


def test_failed_run_reports_what_it_committed(golioth, golioth_integration, day_fleet, monkeypatch):
    """Issue 9, defect 10: a run that fails after committing batches says how many it stored."""
    from integrations.pull import sync

    monkeypatch.setattr(sync, "INGEST_BATCH_SIZE", 500)
    monkeypatch.setattr(sync, "FLUSH_SECONDS", 3600)
    answer = golioth._answer
    calls = 0

    def refuse_after_twenty(handler, kind, *args):
        nonlocal calls
        if kind == "stream":
            calls += 1
            if calls > 20:
                golioth.api_key = "rotated"  # every later call: 401, never retried
        return answer(handler, kind, *args)

    golioth._answer = refuse_after_twenty
    outcome = sync_integration(golioth_integration, now=NOW)

    stored = TelemetryRecord.objects.filter(integration=golioth_integration).count()
    assert outcome.status == "failed"
    assert stored > 0
    assert outcome.inserted == stored
    entry = outcome.activity
    entry.refresh_from_db()
    assert entry.readings_inserted == stored
    assert entry.readings_fetched >= stored
