"""The pull against the simulator over real HTTP: mirror, budget, filters, windows, skips."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from integrations.due import due
from integrations.golioth.simulator.micros import to_micros
from integrations.models import ActivityLog, DeviceIntegration
from integrations.pull.sync import sync_integration
from telemetry.keys import canonical_json
from telemetry.models import Device, TelemetryRecord

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
BACKFILL_FROM = NOW - timedelta(hours=3)


def configure(integration: DeviceIntegration, **settings) -> DeviceIntegration:
    integration.settings = {
        "maxRequestsPerSecond": 1000,
        "backfillFrom": BACKFILL_FROM.isoformat(),
        **settings,
    }
    integration.save()
    return integration


def mirror(integration: DeviceIntegration) -> list[tuple]:
    rows = TelemetryRecord.objects.filter(integration=integration).values_list(
        "device__external_id", "device_timestamp", "telemetry"
    )
    return sorted((d, t, canonical_json(p)) for d, t, p in rows)


def source(golioth, start=None, end=None, *, devices=None) -> list[tuple]:
    return sorted(
        (r.device_external_id, r.timestamp, canonical_json(r.payload))
        for r in golioth.readings(start, end)
        if devices is None or r.device_external_id in devices
    )


def budget(devices: int, new_readings: int) -> int:
    return math.ceil(devices / 100) + math.ceil(new_readings / 100) + 1


@pytest.fixture
def fleet(golioth, golioth_integration):
    """250 devices (12 never connected), 8 readings each over two hours: 20 stream pages."""
    devices = golioth.seed_fleet(
        250, 8, start=NOW - timedelta(hours=2), end=NOW - timedelta(minutes=10)
    )
    stale = golioth.add_device(id="stale0000000000000000000", name="STALE", firmware_version="0.9")
    golioth.add_reading(stale.id, NOW - timedelta(hours=2, minutes=30), {"temp": 1})
    configure(golioth_integration)
    golioth.reset_counters()
    return [*devices, stale]


def test_sync_mirrors_a_250_device_project_exactly(golioth, golioth_integration, fleet):
    outcome = sync_integration(golioth_integration, now=NOW)

    expected = source(golioth)
    assert outcome.status == "success", outcome.error
    assert len(expected) > 1900
    assert mirror(golioth_integration) == expected
    assert (outcome.devices, outcome.fetched, outcome.inserted) == (
        251,
        len(expected),
        len(expected),
    )
    assert outcome.api_calls <= budget(251, len(expected))
    assert golioth.calls == outcome.api_calls


def test_sync_devices_get_last_seen_firmware_and_status(golioth, golioth_integration, fleet):
    sync_integration(golioth_integration, now=NOW)

    rows = {d.external_id: d for d in Device.objects.filter(integration=golioth_integration)}
    assert len(rows) == 251
    for sim in fleet:
        row = rows[sim.id]
        assert (row.name, row.tag_ids, row.enabled) == (sim.name, sim.tag_ids, sim.enabled)
        assert row.cohort_id == (sim.cohort_id or "")
        assert row.firmware_version == sim.firmware_version
        assert row.last_seen == sim.last_report
    statuses = {d.status for d in rows.values() if d.last_seen is None}
    assert statuses == {"never"}
    assert rows["stale0000000000000000000"].status == "offline"
    assert rows["stale0000000000000000000"].firmware["main"]["version"] == "0.9"
    assert rows[fleet[0].id].status == "online"


def test_sync_devices_go_offline_when_they_stop_reporting(golioth, golioth_integration, fleet):
    sync_integration(golioth_integration, now=NOW)
    later = NOW + timedelta(hours=2)

    sync_integration(golioth_integration, now=later)

    statuses = set(Device.objects.values_list("status", flat=True))
    assert statuses == {"offline", "never"}
    assert Device.objects.filter(status="never").count() == 12


def test_sync_second_run_adds_nothing(golioth, golioth_integration, fleet):
    sync_integration(golioth_integration, now=NOW)
    golioth.reset_counters()

    again = sync_integration(golioth_integration, now=NOW + timedelta(minutes=5))

    assert (again.status, again.inserted, again.fetched) == ("success", 0, 0)
    assert again.api_calls == golioth.calls <= budget(251, 0)
    assert mirror(golioth_integration) == source(golioth)


def test_sync_after_new_readings_adds_exactly_those(golioth, golioth_integration, fleet):
    sync_integration(golioth_integration, now=NOW)
    for n, device in enumerate(fleet[:150]):
        golioth.add_reading(device.id, NOW + timedelta(minutes=1, seconds=n), {"temp": n})
    golioth.reset_counters()

    outcome = sync_integration(golioth_integration, now=NOW + timedelta(minutes=10))

    assert (outcome.status, outcome.inserted, outcome.duplicates) == ("success", 150, 0)
    assert outcome.api_calls == golioth.calls <= budget(251, 150)
    assert mirror(golioth_integration) == source(golioth)
    device = Device.objects.get(external_id=fleet[149].id)
    assert device.last_seen == NOW + timedelta(minutes=1, seconds=149)


def test_sync_activity_entry_holds_counts_and_window(golioth, golioth_integration, fleet):
    outcome = sync_integration(golioth_integration, now=NOW)

    entry = ActivityLog.objects.get(integration=golioth_integration)
    assert entry == outcome.activity
    assert (entry.activity_type, entry.status, entry.trigger) == (
        "sync_import",
        "success",
        "schedule",
    )
    assert (entry.devices_seen, entry.readings_fetched) == (251, outcome.fetched)
    assert (entry.readings_inserted, entry.readings_duplicate) == (outcome.inserted, 0)
    assert (entry.api_calls, entry.retries) == (outcome.api_calls, 0)
    assert (entry.window_start, entry.window_end) == (BACKFILL_FROM, NOW - timedelta(seconds=30))
    assert entry.completed_at is not None and entry.response_time_ms is not None
    assert set(TelemetryRecord.objects.values_list("activity_id", flat=True)) == {entry.pk}


def test_sync_moves_the_cursor_to_the_window_end(golioth, golioth_integration, fleet):
    sync_integration(golioth_integration, now=NOW)

    golioth_integration.refresh_from_db()
    assert golioth_integration.sync_cursor == NOW - timedelta(seconds=30)
    assert golioth_integration.last_sync_status == "success"
    assert (golioth_integration.locked_by, golioth_integration.locked_until) == ("", None)


def test_sync_window_starts_one_overlap_before_the_cursor(golioth, golioth_integration):
    configure(golioth_integration, overlapSeconds=120, settleSeconds=10)
    golioth_integration.sync_cursor = NOW - timedelta(minutes=5)
    golioth_integration.save()

    outcome = sync_integration(golioth_integration, now=NOW)

    assert outcome.window_start == NOW - timedelta(minutes=7)
    assert outcome.window_end == NOW - timedelta(seconds=10)


def test_sync_first_run_without_backfill_reads_one_interval(golioth, golioth_integration):
    golioth_integration.settings = {"maxRequestsPerSecond": 1000, "syncIntervalSeconds": 600}
    golioth_integration.save()

    outcome = sync_integration(golioth_integration, now=NOW)

    assert outcome.window_start == NOW - timedelta(minutes=10)


def test_sync_reports_progress_per_page(golioth, golioth_integration, fleet):
    seen = []

    sync_integration(golioth_integration, now=NOW, progress=seen.append)

    assert [p.pages_done for p in seen] == list(range(1, len(seen) + 1))
    assert len(seen) == math.ceil(len(source(golioth)) / 100)
    assert seen[-1].readings == len(source(golioth))


# --- filters -------------------------------------------------------------------------------------


@pytest.fixture
def small_fleet(golioth, golioth_integration):
    """12 devices: even ones tagged `north`, every third `roof`; 3 readings each."""
    for i in range(12):
        tags = [t for t, on in (("north", i % 2 == 0), ("roof", i % 3 == 0)) if on]
        golioth.add_device(
            id=f"dev{i:02d}",
            name=f"PUMP-{i:02d}" if i < 6 else f"FAN-{i:02d}",
            tag_ids=tags,
            enabled=i != 11,
        )
        for n in range(3):
            golioth.add_reading(f"dev{i:02d}", NOW - timedelta(minutes=30 - n), {"i": i, "n": n})
    golioth.reset_counters()


def synced_devices(integration) -> set[str]:
    return {d for d, _, _ in mirror(integration)}


@pytest.mark.parametrize(
    ("device_filter", "expected"),
    [
        ({"tags": ["north", "roof"], "tagMatch": "all"}, {"dev00", "dev06"}),
        (
            {"tags": ["north", "roof"], "tagMatch": "any"},
            {"dev00", "dev02", "dev03", "dev04", "dev06", "dev08", "dev09", "dev10"},
        ),
        ({"namePattern": "PUMP-0[0-2]"}, {"dev00", "dev01", "dev02"}),
        ({"namePattern": "FAN-*", "enabledOnly": True}, {f"dev{i:02d}" for i in range(6, 11)}),
    ],
)
def test_sync_device_filter_decides_what_is_synced(
    golioth, golioth_integration, small_fleet, device_filter, expected
):
    configure(golioth_integration, deviceFilter=device_filter)

    outcome = sync_integration(golioth_integration, now=NOW)

    assert outcome.status == "success"
    assert synced_devices(golioth_integration) == expected
    assert mirror(golioth_integration) == source(golioth, devices=expected)
    stored = set(Device.objects.values_list("external_id", flat=True))
    assert stored == expected
    assert outcome.devices == len(expected)


def test_sync_filter_naming_few_devices_fetches_per_device(
    golioth, golioth_integration, small_fleet
):
    configure(golioth_integration, deviceFilter={"deviceIds": ["dev03", "dev05"]})

    sync_integration(golioth_integration, now=NOW)

    assert golioth.call_counts["device_stream"] == 2
    assert golioth.call_counts["stream"] == 0
    assert synced_devices(golioth_integration) == {"dev03", "dev05"}


def test_sync_filter_naming_many_devices_queries_project_wide(
    golioth, golioth_integration, small_fleet
):
    named = [f"dev{i:02d}" for i in range(7)]
    configure(golioth_integration, deviceFilter={"deviceIds": named})

    sync_integration(golioth_integration, now=NOW)

    assert golioth.call_counts["stream"] == 1
    assert golioth.call_counts["device_stream"] == 0
    assert synced_devices(golioth_integration) == set(named)


def test_sync_reading_of_a_device_missing_from_the_list_gets_a_minimal_row(
    golioth, golioth_integration, small_fleet
):
    configure(golioth_integration)
    del golioth.store.devices["dev04"]  # deleted from Golioth; its history is still there

    outcome = sync_integration(golioth_integration, now=NOW)

    assert outcome.status == "success"
    assert mirror(golioth_integration) == source(golioth)
    device = Device.objects.get(external_id="dev04")
    assert (device.name, device.last_seen) == ("dev04", NOW - timedelta(minutes=28))


def test_sync_unstorable_payload_is_rejected_and_the_rest_kept(
    golioth, golioth_integration, small_fleet
):
    configure(golioth_integration)
    golioth.store.append_json("dev01", to_micros(NOW - timedelta(minutes=20)), '{"t": NaN}')

    outcome = sync_integration(golioth_integration, now=NOW)

    assert (outcome.status, outcome.rejected, outcome.inserted) == ("partial", 1, 36)
    entry = ActivityLog.objects.get(activity_type="sync_import")
    assert (entry.status, entry.error_message) == (
        "partial",
        "1 reading was not stored: payload cannot be stored as JSON: "
        "it holds NaN, Infinity or a number too large to store",
    )
    golioth_integration.refresh_from_db()
    assert golioth_integration.sync_cursor == NOW - timedelta(seconds=30)


# --- skips and time windows ----------------------------------------------------------------------

BERLIN_NIGHT = {
    "start": "22:00",
    "end": "06:00",
    "timezone": "Europe/Berlin",
    "days": [0, 1, 2, 3, 4, 5, 6],
}


@pytest.mark.parametrize(
    ("utc", "inside"),
    [
        ("2026-03-02T21:30", True),  # 22:30 in Berlin (21:30 in UTC would be outside)
        ("2026-03-03T02:00", True),  # 03:00 in Berlin, the night after
        ("2026-03-03T05:30", False),  # 06:30 in Berlin (05:30 in UTC would be inside)
        ("2026-03-02T11:00", False),
        ("2026-07-01T20:30", True),  # 22:30 in Berlin in summer time (UTC+2)
        ("2026-07-01T04:30", False),  # 06:30 in Berlin in summer time
    ],
)
def test_skip_reason_overnight_window_in_its_own_timezone(golioth_integration, utc, inside):
    configure(golioth_integration, timeWindow=BERLIN_NIGHT)
    moment = datetime.fromisoformat(utc).replace(tzinfo=UTC)

    reason = due(golioth_integration, now=moment).skip_reason

    assert (reason is None) == inside
    if not inside:
        assert reason == "outside the sync time window (22:00-06:00 Europe/Berlin, every day)"


def test_skip_reason_overnight_window_belongs_to_the_day_it_opens(golioth_integration):
    configure(golioth_integration, timeWindow={**BERLIN_NIGHT, "days": [5]})  # Friday nights
    saturday_3am = datetime(2026, 3, 7, 2, 0, tzinfo=UTC)
    sunday_3am = datetime(2026, 3, 8, 2, 0, tzinfo=UTC)

    assert due(golioth_integration, now=saturday_3am).skip_reason is None
    assert due(golioth_integration, now=sunday_3am).skip_reason is not None


def test_sync_outside_the_window_is_skipped_and_logged_once(
    golioth, golioth_integration, small_fleet
):
    configure(golioth_integration, timeWindow=BERLIN_NIGHT)
    noon = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)

    first = sync_integration(golioth_integration, now=noon)
    second = sync_integration(golioth_integration, now=noon + timedelta(minutes=1))

    assert (first.status, second.status) == ("skipped", "skipped")
    entries = ActivityLog.objects.filter(activity_type="sync_skipped")
    assert [e.message for e in entries] == [
        "Sync skipped: outside the sync time window (22:00-06:00 Europe/Berlin, every day)"
    ]
    assert (first.activity, second.activity) == (entries[0], None)
    assert TelemetryRecord.objects.count() == 0
    assert golioth.calls == 0


def test_sync_skip_is_logged_again_after_a_run_that_synced(
    golioth, golioth_integration, small_fleet
):
    configure(golioth_integration)
    DeviceIntegration.objects.filter(pk=golioth_integration.pk).update(status="paused")
    golioth_integration.refresh_from_db()
    sync_integration(golioth_integration, now=NOW)
    sync_integration(golioth_integration, now=NOW)
    DeviceIntegration.objects.filter(pk=golioth_integration.pk).update(status="active")
    golioth_integration.refresh_from_db()
    assert sync_integration(golioth_integration, now=NOW).status == "success"
    DeviceIntegration.objects.filter(pk=golioth_integration.pk).update(status="paused")
    golioth_integration.refresh_from_db()

    sync_integration(golioth_integration, now=NOW)

    messages = list(
        ActivityLog.objects.filter(activity_type="sync_skipped")
        .order_by("id")
        .values_list("message", flat=True)
    )
    assert messages == ["Sync skipped: integration is paused, not active"] * 2


def test_sync_disabled_is_skipped_unless_forced(golioth, golioth_integration, small_fleet):
    configure(golioth_integration, syncEnabled=False)

    skipped = sync_integration(golioth_integration, now=NOW)
    forced = sync_integration(golioth_integration, now=NOW, force=True)

    assert skipped.skip_reason == "sync is disabled (syncEnabled is off)"
    assert forced.status == "success"
    assert mirror(golioth_integration) == source(golioth)


def test_sync_force_ignores_the_time_window(golioth, golioth_integration, small_fleet):
    configure(golioth_integration, timeWindow=BERLIN_NIGHT)

    outcome = sync_integration(golioth_integration, now=NOW, force=True, trigger="manual")

    assert outcome.status == "success"
    assert outcome.activity.trigger == "manual"


# --- backfill and dry run ------------------------------------------------------------------------


def test_backfill_stores_the_window_and_leaves_the_cursor(
    golioth, golioth_integration, small_fleet
):
    configure(golioth_integration)
    cursor = NOW - timedelta(hours=1)
    DeviceIntegration.objects.filter(pk=golioth_integration.pk).update(sync_cursor=cursor)
    golioth_integration.refresh_from_db()
    since, until = NOW - timedelta(minutes=30), NOW - timedelta(minutes=29)

    outcome = sync_integration(golioth_integration, now=NOW, since=since, until=until)

    assert (outcome.status, outcome.inserted) == ("success", 12)
    assert mirror(golioth_integration) == source(golioth, since, until)
    assert set(TelemetryRecord.objects.values_list("source", flat=True)) == {"backfill"}
    assert outcome.activity.activity_type == "backfill"
    golioth_integration.refresh_from_db()
    assert golioth_integration.sync_cursor == cursor


def test_backfill_window_must_not_be_empty(golioth_integration):
    with pytest.raises(ValueError, match="window is empty"):
        sync_integration(golioth_integration, now=NOW, since=NOW, until=NOW - timedelta(hours=1))


def test_dry_run_fetches_and_counts_and_writes_nothing(golioth, golioth_integration, small_fleet):
    configure(golioth_integration)

    outcome = sync_integration(golioth_integration, now=NOW, dry_run=True)

    assert (outcome.status, outcome.devices, outcome.fetched, outcome.inserted) == (
        "success",
        12,
        36,
        36,
    )
    assert (Device.objects.count(), TelemetryRecord.objects.count()) == (0, 0)
    assert ActivityLog.objects.count() == 0
    golioth_integration.refresh_from_db()
    assert (golioth_integration.sync_cursor, golioth_integration.last_sync_at) == (None, None)


def test_dry_run_counts_stored_readings_as_duplicates(golioth, golioth_integration, small_fleet):
    configure(golioth_integration)
    sync_integration(golioth_integration, now=NOW)
    golioth.add_reading("dev01", NOW - timedelta(minutes=40), {"late": True})

    outcome = sync_integration(golioth_integration, now=NOW, dry_run=True, since=BACKFILL_FROM)

    assert (outcome.fetched, outcome.inserted, outcome.duplicates) == (37, 1, 36)
    assert TelemetryRecord.objects.count() == 36


def test_device_ids_sync_only_those_and_leave_the_cursor(golioth, golioth_integration, small_fleet):
    configure(golioth_integration)

    outcome = sync_integration(golioth_integration, now=NOW, device_ids=["dev07"])

    assert (outcome.status, outcome.devices, outcome.cursor_moved) == ("success", 1, False)
    assert synced_devices(golioth_integration) == {"dev07"}
    assert golioth.call_counts["device_stream"] == 1
    golioth_integration.refresh_from_db()
    assert golioth_integration.sync_cursor is None
