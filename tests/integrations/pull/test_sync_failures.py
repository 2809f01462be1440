"""The pull when Golioth misbehaves: faults, a bad key, repeated failures, the connection test."""

from __future__ import annotations

import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from integrations.golioth.simulator.faults import FAULT_KINDS, FaultConfig
from integrations.models import ActivityLog, DeviceIntegration
from integrations.pull.connection import test_connection as check_connection
from integrations.pull.sync import sync_integration
from telemetry.keys import canonical_json
from telemetry.models import TelemetryRecord

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def seeded(golioth, golioth_integration):
    """60 devices, 20 readings each: a device page and 12 stream pages."""
    golioth.seed_fleet(
        60, 20, start=NOW - timedelta(hours=2), end=NOW - timedelta(minutes=10), never_connected=0
    )
    golioth_integration.settings = {
        "maxRequestsPerSecond": 1000,
        "backfillFrom": (NOW - timedelta(hours=3)).isoformat(),
    }
    golioth_integration.save()
    return golioth_integration


@pytest.fixture
def quick_timeouts(settings):
    # The simulator's "timeout" fault answers after slow_seconds: longer than the client waits.
    settings.GSYNC_HTTP_TIMEOUT = 0.2
    return FaultConfig(rate=0.2, retry_after=0.01, slow_seconds=0.4, seed=7)


def mirror(integration) -> list[tuple]:
    rows = TelemetryRecord.objects.filter(integration=integration).values_list(
        "device__external_id", "device_timestamp", "telemetry"
    )
    return sorted((d, t, canonical_json(p)) for d, t, p in rows)


def source(golioth) -> list[tuple]:
    return sorted(
        (r.device_external_id, r.timestamp, canonical_json(r.payload)) for r in golioth.readings()
    )


def assert_failed_cleanly(outcome, integration: DeviceIntegration, cursor) -> None:
    integration.refresh_from_db()
    assert outcome.error
    assert integration.sync_cursor == cursor
    assert integration.last_sync_status == "failed"
    assert integration.sync_error == outcome.error
    assert (integration.locked_by, integration.locked_until) == ("", None)
    assert outcome.activity.status == "failed"
    assert outcome.activity.error_message == outcome.error


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_sync_with_faults_on_a_fifth_of_calls_mirrors_exactly_after(
    golioth, seeded, quick_timeouts, kind
):
    golioth.faults = replace(quick_timeouts, kinds=(kind,))

    faulty = sync_integration(seeded, now=NOW)

    assert any(r.fault == kind for r in golioth.requests)  # the faults were met, not dodged

    if faulty.status == "success":
        assert mirror(seeded) == source(golioth)
        assert faulty.retries == faulty.activity.retries
    else:
        assert_failed_cleanly(faulty, seeded, None)
    golioth.faults = None
    assert sync_integration(seeded, now=NOW).status == "success"
    assert mirror(seeded) == source(golioth)


def test_sync_that_runs_out_of_retries_fails_cleanly_then_recovers(
    golioth, seeded, quick_timeouts, settings
):
    settings.GSYNC_HTTP_MAX_RETRIES = 0
    golioth.faults = quick_timeouts

    failed = sync_integration(seeded, now=NOW)

    assert failed.status == "failed"
    assert_failed_cleanly(failed, seeded, None)
    seeded.refresh_from_db()
    assert seeded.consecutive_failures == 1
    golioth.faults = None
    settings.GSYNC_HTTP_MAX_RETRIES = 5
    recovered = sync_integration(seeded, now=NOW)
    assert recovered.status == "success"
    assert mirror(seeded) == source(golioth)
    seeded.refresh_from_db()
    assert (seeded.consecutive_failures, seeded.sync_error) == (0, "")
    assert seeded.sync_cursor == NOW - timedelta(seconds=30)


def test_sync_with_a_rejected_key_fails_at_once_without_retrying(golioth, seeded):
    seeded.set_api_key("wrong-key-7a3f")
    seeded.save()

    outcome = sync_integration(seeded, now=NOW)

    assert outcome.status == "failed"
    assert (outcome.api_calls, outcome.retries, golioth.calls) == (1, 0, 1)
    assert "rejected the API key (401)" in outcome.error
    assert "wrong-key-7a3f" not in outcome.error
    assert_failed_cleanly(outcome, seeded, None)
    assert TelemetryRecord.objects.count() == 0


def test_sync_failure_keeps_the_cursor_of_the_last_good_run(golioth, seeded):
    sync_integration(seeded, now=NOW)
    seeded.refresh_from_db()
    cursor = seeded.sync_cursor
    golioth.stop()  # Golioth unreachable

    outcome = sync_integration(seeded, now=NOW + timedelta(minutes=5))

    assert outcome.status == "failed"
    assert "cannot reach Golioth" in outcome.error
    assert_failed_cleanly(outcome, seeded, cursor)


def test_sync_consecutive_failures_put_the_integration_in_error(golioth, seeded):
    seeded.settings = {**seeded.settings, "maxConsecutiveFailures": 2}
    seeded.set_api_key("revoked-key-0001")
    seeded.save()

    first = sync_integration(seeded, now=NOW)
    seeded.refresh_from_db()
    assert (seeded.status, seeded.consecutive_failures) == ("active", 1)
    second = sync_integration(seeded, now=NOW)
    third = sync_integration(seeded, now=NOW)

    seeded.refresh_from_db()
    assert (first.status, second.status, third.status) == ("failed", "failed", "skipped")
    assert seeded.status == "error"
    assert seeded.sync_error.startswith("Sync stopped after 2 consecutive failures. Last: ")
    assert "API key" in seeded.sync_error
    assert third.skip_reason == "integration is error, not active"
    assert ActivityLog.objects.filter(activity_type="sync_import", status="failed").count() == 2


def test_sync_never_writes_the_key_into_the_activity_log(golioth, seeded):
    secret = "sk-live-do-not-log-1234"
    seeded.set_api_key(secret)
    seeded.save()
    sync_integration(seeded, now=NOW)
    check_connection(seeded)

    for entry in ActivityLog.objects.all():
        text = f"{entry.message} {entry.error_message} {entry.metadata}"
        assert secret not in text and secret[-8:] not in text


# --- test_connection -----------------------------------------------------------------------------


def test_connection_succeeds_and_is_logged(golioth, golioth_integration):
    entry = check_connection(golioth_integration)

    assert (entry.activity_type, entry.status, entry.direction) == (
        "test_connection",
        "success",
        "outgoing",
    )
    assert entry.message == "Connected to project sim-project (Simulated sim-project)"
    assert golioth.call_counts["project"] == 1


def test_connection_with_a_bad_key_names_the_key(golioth, golioth_integration):
    golioth_integration.set_api_key("bad-key-9999")

    entry = check_connection(golioth_integration)

    assert entry.status == "failed"
    assert "rejected the API key (401)" in entry.error_message
    assert golioth.calls == 1


def test_connection_to_the_wrong_project_names_the_project(golioth, golioth_integration):
    golioth_integration.project_id = "someone-elses-project"

    entry = check_connection(golioth_integration)

    assert entry.status == "failed"
    assert "project someone-elses-project (403)" in entry.error_message


def test_connection_to_an_unreachable_base_url_names_it(golioth_integration, settings):
    settings.GSYNC_HTTP_MAX_RETRIES = 1
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    golioth_integration.base_url = f"http://127.0.0.1:{port}"

    entry = check_connection(golioth_integration)

    assert entry.status == "failed"
    assert f"cannot reach Golioth at http://127.0.0.1:{port}" in entry.error_message


def test_connection_without_a_key_says_so(golioth_integration):
    golioth_integration.api_key_encrypted = ""

    entry = check_connection(golioth_integration, trigger="manual")

    assert (entry.status, entry.trigger) == ("failed", "manual")
    assert entry.error_message == "no API key is set for this integration: add one in the admin"


def test_an_integer_python_cannot_read_rejects_one_reading_not_the_run(golioth, seeded):
    """A payload holding an integer of over 4,300 digits (Python refuses to read those,
    CVE-2020-10735) failed its whole page as garbled, was retried, and failed the run every
    time: the pull stalled on it for good. Now that one reading is rejected with its reason."""
    marker = 987654321987
    device = golioth.readings()[0].device_external_id
    golioth.add_reading(device, NOW - timedelta(minutes=30), {"huge": marker})
    answer = golioth._answer

    def huge_integer(handler, kind, *args):
        reply = answer(handler, kind, *args)
        reply.body = reply.body.replace(str(marker).encode(), b"9" * 5000)
        return reply

    golioth._answer = huge_integer
    outcome = sync_integration(seeded, now=NOW)

    seeded.refresh_from_db()
    assert outcome.status == "partial"
    assert outcome.rejected == 1
    assert "a number too large to store" in outcome.rejected_reason
    assert outcome.inserted == 60 * 20
    assert seeded.sync_cursor is not None  # the window is done: the next run moves on
