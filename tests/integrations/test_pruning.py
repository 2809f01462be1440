"""Retention: `manage.py prune`, the daily prune task, and what each kind keeps."""

from __future__ import annotations

import logging
import pydoc
import time
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from django_q.signing import SignedPackage

from integrations.models import ActivityLog, DeviceIntegration, Heartbeat, WebhookDelivery
from integrations.pruning import prune, prune_deliveries, shown
from integrations.scheduling import (
    DISPATCH_FUNC,
    PRUNE_BEAT,
    PRUNE_FUNC,
    dispatch_due_integrations,
)
from telemetry.models import TelemetryRecord

Status = ActivityLog.Status


@pytest.fixture
def retention(settings):
    settings.GSYNC_WEBHOOK_RETENTION_DAYS = 30
    settings.GSYNC_ACTIVITY_RETENTION_DAYS = 180


@pytest.fixture
def kept_10_days(make_integration) -> DeviceIntegration:
    return make_integration("kept 10 days", settings={"telemetryRetentionDays": 10})


@pytest.fixture
def kept_forever(make_integration) -> DeviceIntegration:
    return make_integration("kept forever")


def delivery(integration: DeviceIntegration, *, days_ago: float) -> WebhookDelivery:
    return WebhookDelivery.objects.create(
        integration=integration, body=b"{}", received_at=timezone.now() - timedelta(days=days_ago)
    )


def entry(
    integration: DeviceIntegration, *, days_ago: float, status: str = Status.SUCCESS
) -> ActivityLog:
    return ActivityLog.objects.create(
        integration=integration,
        activity_type=ActivityLog.ActivityType.SYNC_IMPORT,
        status=status,
        started_at=timezone.now() - timedelta(days=days_ago),
    )


def readings(
    integration: DeviceIntegration, make_device, *, days_ago: float, count: int = 1,
    activity: ActivityLog | None = None,
) -> list[TelemetryRecord]:  # fmt: skip
    device = integration.devices.first() or make_device(integration, f"dev-{integration.pk}")
    when = timezone.now() - timedelta(days=days_ago)
    return [
        TelemetryRecord.objects.create(
            device=device,
            integration=integration,
            telemetry={"seq": n},
            device_timestamp=when - timedelta(seconds=n),
            source="sync",
            activity=activity,
            dedup_key=uuid.uuid4(),
        )
        for n in range(count)
    ]


def deletes(queries: CaptureQueriesContext, table: str) -> int:
    return sum(q["sql"].startswith(f'DELETE FROM "{table}"') for q in queries.captured_queries)


# --- what goes and what stays --------------------------------------------------------------------


def test_prune_deletes_old_deliveries_in_batches_and_keeps_new_ones(retention, integration):
    for days in (31, 40, 45, 60, 90):
        delivery(integration, days_ago=days)
    keep = [delivery(integration, days_ago=days).pk for days in (1, 29)]

    with CaptureQueriesContext(connection) as queries:
        result = prune_deliveries(cutoff=timezone.now() - timedelta(days=30), batch_size=2)

    assert result.rows == 5
    assert sorted(WebhookDelivery.objects.values_list("pk", flat=True)) == sorted(keep)
    assert deletes(queries, "webhook_deliveries") == 3  # 2 + 2 + 1, never one big DELETE


def test_prune_deletes_readings_older_than_the_integrations_retention_only(
    retention, kept_10_days, kept_forever, make_device
):
    old = readings(kept_10_days, make_device, days_ago=11, count=7)
    new = readings(kept_10_days, make_device, days_ago=9, count=3)
    ancient = readings(kept_forever, make_device, days_ago=3000, count=2)

    with CaptureQueriesContext(connection) as queries:
        results = prune(batch_size=3)

    remaining = set(TelemetryRecord.objects.values_list("pk", flat=True))
    assert remaining == {r.pk for r in new + ancient}
    assert deletes(queries, "device_telemetry_history") == 3  # 3 + 3 + 1
    by_scope = {(r.kind, r.scope): r for r in results}
    assert by_scope["readings", "kept 10 days"].rows == len(old)
    assert by_scope["readings", "kept forever"].cutoff is None


def test_prune_keeps_started_activity_and_the_readings_of_pruned_entries(
    retention, integration, make_device
):
    old = entry(integration, days_ago=200)
    running = entry(integration, days_ago=200, status=Status.STARTED)
    recent = entry(integration, days_ago=10)
    stored_by_old = readings(integration, make_device, days_ago=200, count=5, activity=old)
    stored_by_recent = readings(integration, make_device, days_ago=10, activity=recent)

    results = prune(batch_size=2)

    assert set(ActivityLog.objects.values_list("pk", flat=True)) == {running.pk, recent.pk}
    # The readings stay (no retention set), only their link to the pruned entry goes.
    assert TelemetryRecord.objects.count() == 6
    assert not TelemetryRecord.objects.filter(pk__in=[r.pk for r in stored_by_old]).exclude(
        activity=None
    )
    assert TelemetryRecord.objects.get(pk=stored_by_recent[0].pk).activity_id == recent.pk
    activity = next(r for r in results if r.kind == "activity entries")
    assert (activity.rows, activity.unlinked) == (1, 5)


def test_prune_keeps_readings_of_an_integration_whose_settings_are_invalid(
    retention, kept_10_days, make_device
):
    readings(kept_10_days, make_device, days_ago=11, count=2)
    DeviceIntegration.objects.filter(pk=kept_10_days.pk).update(
        settings={"telemetryRetentionDays": -3}
    )

    results = prune()

    assert TelemetryRecord.objects.count() == 2
    note = next(r.note for r in results if r.scope == "kept 10 days")
    assert note.startswith("settings invalid, kept: telemetryRetentionDays: must be between")


def test_prune_stops_after_the_batch_that_passes_its_time_limit(retention, integration):
    for _ in range(5):
        delivery(integration, days_ago=31)

    prune(batch_size=2, stop_at=time.monotonic())  # already passed: one batch, then stop

    assert WebhookDelivery.objects.count() == 3


def test_prune_writes_one_log_line_with_the_counts(retention, kept_10_days, make_device, caplog):
    delivery(kept_10_days, days_ago=31)
    readings(kept_10_days, make_device, days_ago=11, count=2)

    with caplog.at_level(logging.INFO, logger="integrations.pruning"):
        prune()

    [line] = [r.getMessage() for r in caplog.records if r.name == "integrations.pruning"]
    assert line.startswith("prune: 1 webhook deliveries before ")
    assert "; 2 readings of kept 10 days before " in line
    assert "; 0 activity entries before " in line


# --- manage.py prune -----------------------------------------------------------------------------


def test_prune_dry_run_shows_counts_and_cutoffs_and_deletes_nothing(
    retention, kept_10_days, kept_forever, make_device
):
    delivery(kept_10_days, days_ago=31)
    entry(kept_10_days, days_ago=181)
    readings(kept_10_days, make_device, days_ago=11, count=4)
    readings(kept_forever, make_device, days_ago=400, count=2)
    out = StringIO()

    call_command("prune", "--dry-run", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["kind", "integration", "older", "than", "rows"]
    delivery_line, ten_days_line, forever_line, activity_line = lines[1:5]  # readings by name
    assert delivery_line.split()[:4] == ["webhook", "deliveries", "all", "integrations"]
    assert delivery_line.endswith(" 1")
    day = f"{timezone.localtime(timezone.now() - timedelta(days=30)):%Y-%m-%d}"
    assert f" {day} " in delivery_line
    assert activity_line.startswith("activity entries") and activity_line.endswith(" 1")
    assert forever_line.split()[-4:] == ["forever", "kept", "forever", "-"]
    assert ten_days_line.startswith("readings") and ten_days_line.endswith(" 4")
    assert lines[-1] == "Dry run: nothing deleted."
    assert WebhookDelivery.objects.count() == 1
    assert ActivityLog.objects.count() == 1
    assert TelemetryRecord.objects.count() == 6


def test_prune_command_shows_then_deletes(retention, kept_10_days, make_device):
    old = entry(kept_10_days, days_ago=181)
    readings(kept_10_days, make_device, days_ago=181, count=3, activity=old)
    readings(kept_10_days, make_device, days_ago=1, count=1)
    out = StringIO()

    call_command("prune", "--batch-size", "2", stdout=out)

    output = out.getvalue()
    assert " 1 (linked by 3 readings)" in output  # the dry figures first
    assert "Deleted: 0 webhook deliveries before " in output
    assert "; 3 readings of kept 10 days before " in output
    # The readings went first, so none was left to unlink.
    assert "; 1 activity entries before " in output and "(0 readings unlinked)" in output
    assert not ActivityLog.objects.exists()
    assert TelemetryRecord.objects.count() == 1


@pytest.mark.parametrize("size", ["0", "-5"])
def test_prune_command_refuses_a_batch_size_below_one(db, size):
    with pytest.raises(CommandError, match=rf"--batch-size must be 1 or more \(got {size}\)"):
        call_command("prune", "--batch-size", size, stdout=StringIO())


def test_prune_webhooks_still_prunes_deliveries_only(retention, integration):
    delivery(integration, days_ago=8)
    entry(integration, days_ago=400)
    out = StringIO()

    call_command("prune_webhooks", "--older-than-days", "7", stdout=out)

    assert out.getvalue() == "Deleted 1 webhook deliveries older than 7 days.\n"
    assert not WebhookDelivery.objects.exists()
    assert ActivityLog.objects.count() == 1


def test_cutoffs_are_shown_in_the_projects_date_format(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    moment = timezone.now().replace(month=1, day=2, hour=3, minute=4, second=5, microsecond=6)

    assert shown(moment) == f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S} CET"


# --- the schedule --------------------------------------------------------------------------------


def queued_funcs() -> list[str]:
    return [SignedPackage.loads(q.payload)["func"] for q in OrmQ.objects.order_by("id")]


@pytest.mark.django_db
def test_setup_schedules_dispatch_queues_the_daily_prune_task():
    Schedule.objects.all().delete()  # the one migrate created
    call_command("setup_schedules", stdout=StringIO())
    [schedule] = Schedule.objects.all()
    assert schedule.func == DISPATCH_FUNC

    pydoc.locate(schedule.func)()  # what the qcluster scheduler runs every minute

    assert queued_funcs() == [PRUNE_FUNC]
    assert callable(pydoc.locate(PRUNE_FUNC))


def test_daily_prune_task_prunes_every_kind_and_records_its_counts(
    run_tasks_inline, retention, make_device, make_integration
):
    paused = make_integration(
        "paused", status=DeviceIntegration.Status.PAUSED, settings={"telemetryRetentionDays": 10}
    )
    delivery(paused, days_ago=31)
    old = entry(paused, days_ago=181)
    readings(paused, make_device, days_ago=11, count=2)
    kept = readings(paused, make_device, days_ago=9, count=1)

    dispatch_due_integrations(now=timezone.now())

    assert not WebhookDelivery.objects.exists()
    assert not ActivityLog.objects.filter(pk=old.pk).exists()
    assert list(TelemetryRecord.objects.values_list("pk", flat=True)) == [kept[0].pk]
    detail = Heartbeat.objects.get(name=PRUNE_BEAT).detail
    assert detail["deleted"] == {
        "webhook deliveries (all integrations)": 1,
        "activity entries (all integrations)": 1,
        "readings (paused)": 2,
    }
