"""`manage.py runsync`: options, summary lines and exit codes, against the simulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from integrations.management.commands.runsync import parse_moment
from integrations.models import ActivityLog, DeviceIntegration
from telemetry.models import Device, TelemetryRecord


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def seeded(golioth, golioth_integration, now):
    """4 devices, 5 readings each in the last hour, and one reading two days ago."""
    for i in range(4):
        golioth.add_device(id=f"dev{i}", name=f"PUMP-{i}")
        for n in range(5):
            golioth.add_reading(f"dev{i}", now - timedelta(minutes=50 - 10 * n), {"i": i, "n": n})
    golioth.add_reading("dev0", now - timedelta(days=2), {"old": True})
    golioth_integration.settings = {
        "maxRequestsPerSecond": 1000,
        "backfillFrom": (now - timedelta(hours=3)).isoformat(),
    }
    golioth_integration.save()
    return golioth_integration


def runsync(*args: str) -> str:
    """The output at `-v 0`: one key=value line per integration, as scripts read it (the
    default table and the progress bar: test_runsync_terminal.py)."""
    out = StringIO()
    call_command("runsync", *args, stdout=out, verbosity=0)
    return out.getvalue()


def test_runsync_syncs_and_prints_a_summary_line_at_verbosity_0(seeded):
    output = runsync("sim-fleet")

    assert output.startswith(
        "sim-fleet: success devices=4 fetched=20 inserted=20 duplicates=0 api_calls=2 retries=0 "
    )
    assert " window=" in output
    assert TelemetryRecord.objects.count() == 20
    assert ActivityLog.objects.get().trigger == "manual"
    seeded.refresh_from_db()
    assert seeded.sync_cursor is not None


def test_runsync_failed_run_exits_non_zero(seeded):
    seeded.set_api_key("wrong-key-5555")
    seeded.save()
    out = StringIO()

    with pytest.raises(CommandError, match="1 of 1 sync runs failed") as failure:
        call_command("runsync", "sim-fleet", stdout=out)

    assert failure.value.returncode == 1
    assert "sim-fleet: failed" in out.getvalue()
    assert "rejected the API key (401)" in out.getvalue()
    assert "wrong-key-5555" not in out.getvalue()


def test_runsync_unknown_name_lists_the_known_ones(seeded, make_integration):
    make_integration("another")

    with pytest.raises(CommandError) as failure:
        runsync("sim-fleet", "nope")

    assert str(failure.value) == "no integration named 'nope' (known: another, sim-fleet)"
    assert TelemetryRecord.objects.count() == 0


def test_runsync_without_names_or_all_is_a_usage_error(seeded):
    with pytest.raises(CommandError, match="name one or more integrations, or pass --all") as e:
        runsync()
    assert e.value.returncode == 2


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01", "2h ago", "3 days", ""])
def test_runsync_bad_since_is_refused_with_the_accepted_forms(seeded, value):
    with pytest.raises(CommandError, match=r"--since: .* is not a time\. Use an ISO 8601 date"):
        runsync("sim-fleet", "--since", value)
    assert TelemetryRecord.objects.count() == 0


def test_runsync_until_without_since_is_refused(seeded):
    with pytest.raises(CommandError, match="--until needs --since"):
        runsync("sim-fleet", "--until", "1h")


def test_runsync_since_after_until_is_refused(seeded):
    with pytest.raises(CommandError, match="must be before --until"):
        runsync("sim-fleet", "--since", "1h", "--until", "2h")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2h", datetime(2026, 3, 2, 10, 0, tzinfo=UTC)),
        ("3D", datetime(2026, 2, 27, 12, 0, tzinfo=UTC)),
        ("45m", datetime(2026, 3, 2, 11, 15, tzinfo=UTC)),
        ("1w", datetime(2026, 2, 23, 12, 0, tzinfo=UTC)),
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01T08:30", datetime(2026, 3, 1, 8, 30, tzinfo=UTC)),
        ("2026-03-01T08:30:00Z", datetime(2026, 3, 1, 8, 30, tzinfo=UTC)),
        ("2026-03-01T09:30+01:00", datetime(2026, 3, 1, 8, 30, tzinfo=UTC)),
    ],
)
def test_parse_moment_takes_iso_dates_and_ages(value, expected):
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert parse_moment(value, now=now, option="--since") == expected


def test_runsync_since_until_backfills_without_moving_the_cursor(seeded, now):
    cursor = now - timedelta(minutes=1)
    DeviceIntegration.objects.filter(pk=seeded.pk).update(sync_cursor=cursor)
    since = (now - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S")
    until = (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")

    output = runsync("sim-fleet", "--since", since, "--until", until)

    assert "sim-fleet: success devices=4 fetched=1 inserted=1" in output
    row = TelemetryRecord.objects.get()
    assert (row.telemetry, row.source) == ({"old": True}, "backfill")
    assert ActivityLog.objects.get().activity_type == "backfill"
    seeded.refresh_from_db()
    assert seeded.sync_cursor == cursor


def test_runsync_dry_run_writes_nothing(seeded):
    output = runsync("sim-fleet", "--dry-run", "--since", "3d")

    assert "sim-fleet: success devices=4 fetched=21 inserted=21" in output
    assert "[dry run: nothing written" in output
    assert (TelemetryRecord.objects.count(), Device.objects.count()) == (0, 0)
    assert ActivityLog.objects.count() == 0
    seeded.refresh_from_db()
    assert (seeded.sync_cursor, seeded.last_sync_at) == (None, None)


def test_runsync_device_syncs_only_that_device(seeded, golioth):
    output = runsync("sim-fleet", "--device", "dev2", "--device", "dev3")

    assert "devices=2 fetched=10 inserted=10" in output
    stored = set(TelemetryRecord.objects.values_list("device__external_id", flat=True))
    assert stored == {"dev2", "dev3"}
    assert golioth.call_counts["device_stream"] == 2
    seeded.refresh_from_db()
    assert seeded.sync_cursor is None


def test_runsync_no_cursor_syncs_the_live_window_and_leaves_the_cursor(seeded):
    output = runsync("sim-fleet", "--no-cursor")

    assert "inserted=20" in output
    seeded.refresh_from_db()
    assert seeded.sync_cursor is None


def test_runsync_paused_integration_is_skipped_unless_forced(seeded):
    DeviceIntegration.objects.filter(pk=seeded.pk).update(status="paused")

    skipped = runsync("sim-fleet")
    forced = runsync("sim-fleet", "--force")

    # Issue 12: it says how to run it anyway.
    assert (
        skipped
        == "sim-fleet: skipped (integration is paused, not active; --force runs it anyway)\n"
    )
    assert forced.startswith("sim-fleet: success devices=4 fetched=20 inserted=20")


def test_runsync_does_not_offer_force_where_it_would_not_help(seeded):
    """Invalid settings stop a forced run too: no hint that --force would run it."""
    DeviceIntegration.objects.filter(pk=seeded.pk).update(settings={"syncIntervalSeconds": 1})

    output = runsync("sim-fleet")

    assert output.startswith("sim-fleet: skipped (settings are invalid: syncIntervalSeconds")
    assert "--force" not in output


def test_runsync_all_runs_every_integration_and_fails_if_one_fails(seeded, make_integration):
    broken = make_integration(
        "broken",
        base_url=seeded.base_url,
        project_id="sim-project",
        api_key="not-the-key",
        settings={"maxRequestsPerSecond": 1000},
    )
    out = StringIO()

    with pytest.raises(CommandError, match="1 of 2 sync runs failed"):
        call_command("runsync", "--all", stdout=out, verbosity=0)

    lines = out.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == [broken.name, seeded.name]
    assert lines[0].startswith("broken: failed")
    assert lines[1].startswith("sim-fleet: success")


def test_runsync_since_inside_the_settle_time_is_an_empty_window(seeded):
    with pytest.raises(CommandError, match="^sim-fleet: the backfill window is empty: "):
        runsync("sim-fleet", "--since", "10s")
    assert ActivityLog.objects.count() == 0
