from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import import_module

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from django_q.signing import SignedPackage

from integrations.models import ActivityLog, DeviceIntegration, Heartbeat, WebhookDelivery
from integrations.scheduling import (
    DISPATCH_BEAT,
    DISPATCH_FUNC,
    RUN_FUNC,
    dispatch_due_integrations,
    enqueue_backfill,
    enqueue_sync,
    ensure_schedules,
)
from telemetry.models import TelemetryRecord

Activity = ActivityLog.ActivityType


def queued_runs() -> list[tuple]:
    """The sync tasks waiting in the ORM broker: (integration id, trigger, kwargs)."""
    tasks = [SignedPackage.loads(q.payload) for q in OrmQ.objects.order_by("id")]
    return [(t["args"][0], t["args"][1], t["kwargs"]) for t in tasks if t["func"] == RUN_FUNC]


def runs_of(integration: DeviceIntegration) -> int:
    return ActivityLog.objects.filter(
        integration=integration, activity_type=Activity.SYNC_IMPORT
    ).count()


# --- the schedule --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_ensure_schedules_twice_leaves_one():
    ensure_schedules()
    ensure_schedules()
    schedule = Schedule.objects.get(func=DISPATCH_FUNC)
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == (Schedule.MINUTES, 1, -1)


@pytest.mark.django_db
def test_ensure_schedules_runs_on_whole_minutes():
    Schedule.objects.all().delete()  # the one migrate created
    Schedule.objects.create(
        func=DISPATCH_FUNC, next_run=datetime(2026, 3, 1, 12, 0, 17, tzinfo=UTC)
    )
    ensure_schedules()
    assert Schedule.objects.get(func=DISPATCH_FUNC).next_run == datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.mark.django_db
def test_ensure_schedules_removes_duplicates():
    for _ in range(3):
        Schedule.objects.create(func=DISPATCH_FUNC, schedule_type=Schedule.HOURLY)
    ensure_schedules()
    assert Schedule.objects.filter(func=DISPATCH_FUNC).count() == 1
    assert Schedule.objects.get(func=DISPATCH_FUNC).schedule_type == Schedule.MINUTES


@pytest.mark.django_db
def test_data_migration_is_idempotent():
    migration = import_module("integrations.migrations.0004_dispatch_schedule")
    migration.create_schedule(django_apps, None)
    migration.create_schedule(django_apps, None)
    assert Schedule.objects.filter(func=DISPATCH_FUNC).count() == 1


@pytest.mark.django_db
def test_setup_schedules_command_reports_the_schedule():
    from io import StringIO

    out = StringIO()
    call_command("setup_schedules", stdout=out)
    call_command("setup_schedules", stdout=out)
    assert Schedule.objects.filter(func=DISPATCH_FUNC).count() == 1
    assert "every 1 minute" in out.getvalue()


# --- the dispatcher with a controlled clock ------------------------------------------------------


@pytest.mark.django_db
def test_dispatch_honours_intervals_over_ten_minutes(run_tasks_inline, golioth, make_integration):
    start = timezone.now().replace(second=0, microsecond=0)
    golioth.seed_fleet(3, 4, start=start - timedelta(hours=1), end=start - timedelta(minutes=2))
    sim = {"api_key": golioth.api_key, "base_url": golioth.base_url}
    history = (start - timedelta(hours=2)).isoformat()
    every_minute = make_integration(
        "every-minute", settings={"syncIntervalSeconds": 60, "backfillFrom": history}, **sim
    )
    every_five = make_integration(
        "every-five", settings={"syncIntervalSeconds": 300, "backfillFrom": history}, **sim
    )
    paused = make_integration("paused", status=DeviceIntegration.Status.PAUSED, **sim)
    disabled = make_integration("disabled", settings={"syncEnabled": False}, **sim)
    # The qcluster scheduler runs each minute's dispatch up to 30 s late: jitter the clock so.
    jitter = [0, 29, 3, 17, 29, 0, 12, 25, 1, 28]
    for minute, late in enumerate(jitter):
        dispatch_due_integrations(now=start + timedelta(minutes=minute, seconds=late))

    assert runs_of(every_minute) == 10
    assert runs_of(every_five) == 2
    assert runs_of(paused) == runs_of(disabled) == 0
    # Skipped, and said so once each, not every minute.
    skips = ActivityLog.objects.filter(activity_type=Activity.SYNC_SKIPPED)
    assert sorted(skips.values_list("integration__name", flat=True)) == ["disabled", "paused"]
    assert TelemetryRecord.objects.filter(integration=every_minute).count() == 12


@pytest.mark.django_db
def test_dispatch_skips_outside_time_window(run_tasks_inline, golioth, make_integration):
    window = {"start": "08:00", "end": "09:00", "timezone": "Europe/Berlin", "days": [1]}
    integration = make_integration(
        "office-hours",
        settings={"syncIntervalSeconds": 60, "timeWindow": window},
        api_key=golioth.api_key,
        base_url=golioth.base_url,
    )
    tuesday_noon = datetime(2026, 3, 3, 11, tzinfo=UTC)  # 12:00 in Berlin, a Tuesday
    assert dispatch_due_integrations(now=tuesday_noon) == []
    assert dispatch_due_integrations(now=tuesday_noon + timedelta(minutes=1)) == []
    skip = ActivityLog.objects.get(integration=integration, activity_type=Activity.SYNC_SKIPPED)
    assert "outside the sync time window" in skip.message


@pytest.mark.django_db
def test_dispatch_changed_interval_applies_at_next_dispatch(make_integration):
    integration = make_integration(settings={"syncIntervalSeconds": 600})
    now = timezone.now()
    DeviceIntegration.objects.filter(pk=integration.pk).update(last_queued_at=now)
    assert dispatch_due_integrations(now=now + timedelta(minutes=2)) == []
    integration.settings = {"syncIntervalSeconds": 60}
    integration.save()
    assert dispatch_due_integrations(now=now + timedelta(minutes=2)) == [integration.pk]


# --- never queued twice --------------------------------------------------------------------------


@pytest.mark.django_db
def test_dispatch_does_not_queue_behind_a_queued_or_running_run(make_integration):
    now = timezone.now()
    queued = make_integration("queued")
    running = make_integration("running")
    idle = make_integration("idle")
    DeviceIntegration.objects.filter(pk=queued.pk).update(queued_at=now - timedelta(minutes=3))
    DeviceIntegration.objects.filter(pk=running.pk).update(
        locked_until=now + timedelta(minutes=4), locked_by="other-host:123:abc"
    )
    assert dispatch_due_integrations(now=now) == [idle.pk]
    # The next minute, the idle one is queued now and nobody is queued again.
    assert dispatch_due_integrations(now=now + timedelta(minutes=1)) == []
    assert [run[0] for run in queued_runs()] == [idle.pk]


@pytest.mark.django_db
def test_dispatch_requeues_a_stale_queued_run(make_integration, settings):
    settings.GSYNC_QUEUE_STALE_SECONDS = 600
    integration = make_integration()
    now = timezone.now()
    DeviceIntegration.objects.filter(pk=integration.pk).update(
        queued_at=now - timedelta(minutes=11)
    )
    assert dispatch_due_integrations(now=now) == [integration.pk]


@pytest.mark.django_db
def test_dispatch_requeues_after_a_dead_workers_lease_expires(make_integration):
    integration = make_integration()
    now = timezone.now()
    # Its run was queued 20 s ago (a 300 s interval), took the lease and its worker died.
    DeviceIntegration.objects.filter(pk=integration.pk).update(
        last_queued_at=now - timedelta(seconds=20),
        locked_until=now - timedelta(seconds=1),
        locked_by="dead-host:1:abc",
    )
    assert dispatch_due_integrations(now=now) == [integration.pk]


@pytest.mark.django_db
def test_dispatch_waits_for_a_dead_workers_lease_to_expire(make_integration):
    integration = make_integration()
    now = timezone.now()
    DeviceIntegration.objects.filter(pk=integration.pk).update(
        locked_until=now + timedelta(seconds=5), locked_by="dead-host:1:abc"
    )
    assert dispatch_due_integrations(now=now) == []
    assert dispatch_due_integrations(now=now + timedelta(seconds=6)) == [integration.pk]


@pytest.mark.django_db
def test_enqueue_sync_burst_of_clicks_queues_one(make_integration):
    integration = make_integration()
    clicks = [enqueue_sync(integration) for _ in range(5)]
    assert clicks == [True, False, False, False, False]
    assert queued_runs() == [(integration.pk, "admin", {"force": True})]
    # Nor does the dispatcher add a second copy.
    assert dispatch_due_integrations() == []


@pytest.mark.django_db
def test_dispatch_writes_heartbeat():
    now = timezone.now()
    dispatch_due_integrations(now=now)
    assert Heartbeat.objects.get(name=DISPATCH_BEAT).beat_at == now


# --- the tasks -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_enqueue_sync_runs_and_frees_the_integration(
    run_tasks_inline, golioth, golioth_integration
):
    now = timezone.now()
    golioth.seed_fleet(2, 5, start=now - timedelta(minutes=4), end=now - timedelta(minutes=1))
    assert enqueue_sync(golioth_integration) is True
    golioth_integration.refresh_from_db()
    assert golioth_integration.queued_at is None
    assert golioth_integration.last_sync_status == "success"
    assert TelemetryRecord.objects.count() == 10
    run = ActivityLog.objects.get(activity_type=Activity.SYNC_IMPORT)
    assert (run.trigger, run.status, run.readings_inserted) == ("admin", "success", 10)
    # Free again: the next click queues (and runs) another.
    assert enqueue_sync(golioth_integration) is True


@pytest.mark.django_db
def test_enqueue_sync_ignores_pause_and_window(run_tasks_inline, golioth, make_integration):
    integration = make_integration(
        status=DeviceIntegration.Status.PAUSED,
        settings={"syncEnabled": False},
        api_key=golioth.api_key,
        base_url=golioth.base_url,
    )
    assert enqueue_sync(integration) is True
    assert ActivityLog.objects.get(activity_type=Activity.SYNC_IMPORT).status == "success"


@pytest.mark.django_db
def test_enqueue_backfill_keeps_the_live_cursor(run_tasks_inline, golioth, golioth_integration):
    now = timezone.now()
    golioth.seed_fleet(2, 6, start=now - timedelta(days=3), end=now - timedelta(days=2))
    cursor = now - timedelta(minutes=5)
    DeviceIntegration.objects.filter(pk=golioth_integration.pk).update(sync_cursor=cursor)
    queued = enqueue_backfill(
        golioth_integration, since=now - timedelta(days=4), until=now - timedelta(days=1)
    )
    assert queued is True
    golioth_integration.refresh_from_db()
    assert golioth_integration.sync_cursor == cursor
    assert golioth_integration.last_queued_at is None
    assert TelemetryRecord.objects.filter(source="backfill").count() == 12
    assert ActivityLog.objects.get(activity_type=Activity.BACKFILL).status == "success"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC), "before its end"),
        (datetime(2026, 3, 1), datetime(2026, 3, 2), "time zone"),  # noqa: DTZ001
    ],
)
def test_enqueue_backfill_refuses_bad_range(integration, since, until, message):
    with pytest.raises(ValueError, match=message):
        enqueue_backfill(integration, since=since, until=until)
    assert queued_runs() == []


@pytest.mark.django_db
def test_run_sync_task_for_deleted_integration_is_a_no_op(run_tasks_inline):
    from integrations.scheduling import run_sync_task

    assert run_sync_task(999_999)["status"] == "skipped"


@pytest.mark.django_db
def test_dispatch_prunes_old_deliveries_once_a_day(run_tasks_inline, make_integration, settings):
    settings.GSYNC_WEBHOOK_RETENTION_DAYS = 30
    integration = make_integration(status=DeviceIntegration.Status.PAUSED)  # push only
    now = timezone.now()
    old = WebhookDelivery.objects.create(
        integration=integration, body=b"{}", received_at=now - timedelta(days=31)
    )
    recent = WebhookDelivery.objects.create(
        integration=integration, body=b"{}", received_at=now - timedelta(days=29)
    )
    dispatch_due_integrations(now=now)
    assert list(WebhookDelivery.objects.all()) == [recent]
    # Another old one the same day waits for tomorrow's prune.
    old.pk = None
    old.save()
    dispatch_due_integrations(now=now + timedelta(hours=23))
    assert WebhookDelivery.objects.count() == 2
    dispatch_due_integrations(now=now + timedelta(hours=24))
    assert list(WebhookDelivery.objects.all()) == [recent]


# --- reconcile -----------------------------------------------------------------------------------


def queued_reconciles() -> list[int]:
    from integrations.scheduling import RECONCILE_FUNC

    tasks = [SignedPackage.loads(q.payload) for q in OrmQ.objects.order_by("id")]
    return [t["args"][0] for t in tasks if t["func"] == RECONCILE_FUNC]


@pytest.mark.django_db
def test_dispatch_queues_a_reconcile_once_its_interval_passed(make_integration):
    now = timezone.now()
    synced = make_integration("synced", settings={"reconcileIntervalMinutes": 60})
    DeviceIntegration.objects.filter(pk=synced.pk).update(
        sync_cursor=now, last_sync_at=now, last_queued_at=now
    )
    never_synced = make_integration("new", settings={"reconcileIntervalMinutes": 60})
    DeviceIntegration.objects.filter(pk=never_synced.pk).update(last_queued_at=now)
    off = make_integration("off", settings={"reconcileIntervalMinutes": 0})
    DeviceIntegration.objects.filter(pk=off.pk).update(
        sync_cursor=now, last_sync_at=now, last_queued_at=now
    )

    dispatch_due_integrations(now=now + timedelta(seconds=30))
    assert queued_reconciles() == [synced.pk]

    # Claimed while it waits, then not again until the interval has passed since it ran.
    dispatch_due_integrations(now=now + timedelta(seconds=90))
    assert queued_reconciles() == [synced.pk]
    OrmQ.objects.all().delete()
    DeviceIntegration.objects.filter(pk=synced.pk).update(queued_at=None, last_reconcile_at=now)
    dispatch_due_integrations(now=now + timedelta(minutes=30))
    assert queued_reconciles() == []
    DeviceIntegration.objects.filter(pk__in=[synced.pk, off.pk]).update(
        last_queued_at=now + timedelta(minutes=61)
    )
    dispatch_due_integrations(now=now + timedelta(minutes=61))
    assert queued_reconciles() == [synced.pk]
