"""The queued push path: the webhook answers 202 {"queued": id} at once, ingest workers store
the readings in batches, each delivery gets its own outcome, and nothing is lost or doubled when
a worker fails, dies or is stopped, or when two workers drain the same queue."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from integrations.health import check_health
from integrations.models import ActivityLog, DeviceIntegration, WebhookDelivery
from integrations.pull.sync import sync_integration
from integrations.push import view as webhook_view
from integrations.push.minutes import MINUTE, ROLL_UP_GRACE, roll_up_webhook_minutes
from integrations.push.queue import ingest_queued
from telemetry.models import Device, TelemetryRecord
from tests.integrations.push.test_webhooks import DEVICE, SECRET, ce_headers, post, recent

ROOT = Path(__file__).resolve().parents[3]
Outcome = WebhookDelivery.Outcome


@pytest.fixture
def queued(make_integration) -> DeviceIntegration:
    integration = make_integration("queued", webhook_enabled=True, settings={"webhookQueued": True})
    integration.add_webhook_secret(SECRET)
    integration.save()
    return integration


def push(client, integration, data, *, device=DEVICE, seconds=0.0, **headers):
    return post(
        client,
        integration,
        data,
        headers=ce_headers(device=device, time=recent(seconds)),
        **headers,
    )


def drain() -> int:
    total = 0
    while done := ingest_queued():
        total += done
    return total


def outcomes() -> list[tuple[str, int, int, str]]:
    rows = WebhookDelivery.objects.order_by("id")
    return list(rows.values_list("outcome", "readings_stored", "readings_duplicate", "error"))


# --- the answer and the worker -------------------------------------------------------------------


def test_queued_webhook_answers_202_and_the_worker_stores_the_reading(client, queued):
    response = push(client, queued, {"temp": 21.5})

    assert response.status_code == 202
    delivery = WebhookDelivery.objects.get()
    assert response.json() == {"queued": delivery.pk}
    assert delivery.outcome == Outcome.QUEUED
    assert not TelemetryRecord.objects.exists()

    assert drain() == 1

    record = TelemetryRecord.objects.get()
    assert record.telemetry == {"temp": 21.5}
    assert record.source == TelemetryRecord.Source.WEBHOOK
    delivery.refresh_from_db()
    assert (delivery.outcome, delivery.readings_stored, delivery.attempts) == ("processed", 1, 1)
    # The sender was answered 202; the worker's verdict is the outcome.
    assert (delivery.response_status, delivery.device_external_id) == (202, DEVICE)
    device = Device.objects.get(external_id=DEVICE)
    assert device.last_seen == record.device_timestamp
    assert device.status == Device.Status.ONLINE
    # The reading belongs to its minute's activity entry, like a synchronous one.
    assert record.activity.activity_type == ActivityLog.ActivityType.WEBHOOK_RECEIVED


def test_queued_is_the_default_for_a_new_integration():
    assert DeviceIntegration(name="new").sync_settings.webhook_queued is True


def test_each_delivery_of_a_batch_gets_its_own_outcome(client, queued, make_integration):
    queued.settings = {**queued.settings, "webhookCreatesDevices": False}
    queued.save()
    Device.objects.create(integration=queued, external_id=DEVICE, name="known")
    big = {"blob": "x" * 70_000}
    same = ce_headers(time=recent(1))
    post(client, queued, {"temp": 1}, headers=same)
    post(client, queued, {"temp": 1}, headers=same)  # the same reading again
    push(client, queued, {"temp": 2}, device="unknown-device", seconds=2)
    push(client, queued, big, seconds=3)
    other = ce_headers(time=recent(4))
    other["Ce-Subject"] = "another-project"
    post(client, queued, {"temp": 3}, headers=other)

    assert drain() == 5

    got = outcomes()
    assert [row[:3] for row in got] == [
        ("processed", 1, 0),
        ("duplicate", 0, 1),
        ("rejected", 0, 0),
        ("rejected", 0, 0),
        ("rejected", 0, 0),
    ]
    assert "unknown device 'unknown-device'" in got[2][3]
    assert "GSYNC_MAX_READING_BYTES" in got[3][3]
    assert "another-project" in got[4][3]
    assert TelemetryRecord.objects.count() == 1


def test_the_worker_adds_devices_it_does_not_know(client, queued):
    for n in range(3):
        push(client, queued, {"n": n}, device=f"new-{n}", seconds=n)

    drain()

    assert sorted(Device.objects.values_list("external_id", flat=True)) == [
        "new-0",
        "new-1",
        "new-2",
    ]
    assert TelemetryRecord.objects.count() == 3


def test_what_is_not_a_reading_is_answered_at_once_and_not_queued(client, queued):
    bad = post(client, queued, b"{not json", headers=ce_headers(time=recent()))
    logs = post(client, queued, {"msg": "boot"}, headers=ce_headers(path="logs", time=recent()))

    assert bad.status_code == 400
    assert "error" in bad.json()
    assert logs.status_code == 200
    assert logs.json()["ignored"] == "path /logs is not mirrored"
    assert list(WebhookDelivery.objects.values_list("outcome", "response_status")) == [
        ("ignored", 200),
        ("failed", 400),
    ]
    assert drain() == 0


def test_one_bad_delivery_fails_alone_and_the_rest_of_its_batch_is_stored(
    client, queued, monkeypatch
):
    from integrations.push import deliveries

    for n in range(4):
        push(client, queued, {"n": n}, seconds=n)
    real = deliveries.parse_webhook

    def parse_with_a_bug(body, **kwargs):
        if b'"n": 2' in body:
            raise RuntimeError("a bug in the parser")
        return real(body, **kwargs)

    monkeypatch.setattr(deliveries, "parse_webhook", parse_with_a_bug)

    assert drain() == 4

    assert [row[0] for row in outcomes()] == ["processed", "processed", "failed", "processed"]
    failed = WebhookDelivery.objects.get(outcome="failed")
    assert "RuntimeError: a bug in the parser" in failed.error
    assert "parse_with_a_bug" in failed.traceback
    assert TelemetryRecord.objects.count() == 3


def test_a_delivery_a_request_never_finished_is_picked_up_when_stale(queued):
    # A synchronous request stored it, then its web worker was killed before processing.
    body = json.dumps({"temp": 5}).encode()
    stuck = WebhookDelivery.objects.create(
        integration=queued,
        received_at=timezone.now() - timedelta(minutes=10),
        headers=ce_headers(time=recent()),
        body=body,
        content_type="application/json",
    )
    fresh = WebhookDelivery.objects.create(
        integration=queued, headers=ce_headers(time=recent(1)), body=body
    )

    assert drain() == 1

    stuck.refresh_from_db()
    fresh.refresh_from_db()
    assert (stuck.outcome, fresh.outcome) == ("processed", "received")


def test_queued_and_pulled_copies_of_a_reading_end_as_one_row(client, golioth, golioth_integration):
    golioth.add_device(id=DEVICE, name="boiler")
    golioth_integration.webhook_enabled = True
    golioth_integration.settings = {**golioth_integration.settings, "settleSeconds": 0}
    golioth_integration.add_webhook_secret(SECRET)
    golioth_integration.save()
    when = recent().replace(microsecond=250_000)
    golioth.add_reading(DEVICE, when, {"temp": 7})
    post(client, golioth_integration, {"temp": 7}, headers=ce_headers(time=when))

    drain()
    outcome = sync_integration(
        golioth_integration, trigger="manual", force=True, since=when - timedelta(hours=1)
    )

    assert (outcome.fetched, outcome.inserted, outcome.duplicates) == (1, 0, 1)
    assert TelemetryRecord.objects.count() == 1


# --- the minute's entry, health ------------------------------------------------------------------


def test_the_minute_entry_is_counted_only_once_its_deliveries_are_stored(client, queued):
    push(client, queued, {"temp": 1})
    entry = ActivityLog.objects.get(activity_type=ActivityLog.ActivityType.WEBHOOK_RECEIVED)
    after_the_minute = entry.started_at + MINUTE + ROLL_UP_GRACE + timedelta(seconds=1)

    assert roll_up_webhook_minutes(now=after_the_minute) == 0
    entry.refresh_from_db()
    assert entry.status == ActivityLog.Status.STARTED

    drain()
    assert roll_up_webhook_minutes(now=after_the_minute) == 1
    entry.refresh_from_db()
    assert (entry.status, entry.deliveries, entry.readings_inserted) == ("success", 1, 1)


def test_health_shows_the_backlog_and_fails_when_it_is_not_drained(client, queued, settings):
    from integrations.models import Heartbeat
    from integrations.scheduling import DISPATCH_BEAT

    Heartbeat.objects.create(name=DISPATCH_BEAT, beat_at=timezone.now())
    push(client, queued, {"temp": 1})
    push(client, queued, {"temp": 2}, seconds=1)
    now = timezone.now()

    fine = check_health(now=now).to_json(now=now)
    assert fine["status"] == "ok"
    assert fine["webhook_backlog"] == 2
    # The age of the first delivery pushed, by its stored time (not 0: the push takes a moment).
    oldest = WebhookDelivery.objects.order_by("received_at").first()
    assert fine["oldest_queued_age_seconds"] == round((now - oldest.received_at).total_seconds())

    later = now + timedelta(seconds=settings.GSYNC_HEALTH_MAX_QUEUE_AGE + 5)
    report = check_health(now=later)
    assert not report.ok
    assert "2 webhook deliveries wait for an ingest worker" in report.reason
    assert "manage.py ingest_worker" in report.reason

    drain()
    report = check_health(now=later)
    assert (report.ok, report.backlog, report.oldest_queued) == (True, 0, None)


# --- the web side's cost -------------------------------------------------------------------------


def test_a_queued_webhook_costs_one_insert_once_the_integration_is_known(client, queued, settings):
    settings.GSYNC_WEBHOOK_CONFIG_SECONDS = 30
    webhook_view.forget_integrations()
    push(client, queued, {"temp": 1})  # reads the integration and the minute's entry

    with CaptureQueriesContext(connection) as queries:
        response = push(client, queued, {"temp": 2}, seconds=1)

    assert response.status_code == 202
    (query,) = queries.captured_queries  # one round trip
    # On PostgreSQL the INSERT carries its bound (integrations.push.backpressure).
    bound = "SET LOCAL statement_timeout = 2000; " if connection.vendor == "postgresql" else ""
    assert query["sql"].startswith(f"{bound}INSERT INTO")
    webhook_view.forget_integrations()


def test_a_disabled_webhook_stops_being_accepted_within_the_config_time(client, queued, settings):
    settings.GSYNC_WEBHOOK_CONFIG_SECONDS = 0.3
    webhook_view.forget_integrations()
    assert push(client, queued, {"temp": 1}).status_code == 202
    DeviceIntegration.objects.filter(pk=queued.pk).update(webhook_enabled=False)

    time.sleep(0.4)
    assert push(client, queued, {"temp": 2}, seconds=1).status_code == 404
    webhook_view.forget_integrations()


# --- the command ---------------------------------------------------------------------------------


def test_ingest_worker_once_stores_the_queue_and_says_how_much(client, queued):
    for n in range(3):
        push(client, queued, {"n": n}, seconds=n)
    out = io.StringIO()

    call_command("ingest_worker", "--once", "--batch-size", "2", stdout=out)

    assert "3 deliveries stored" in out.getvalue()
    assert TelemetryRecord.objects.count() == 3


def test_ingest_worker_refuses_a_bad_batch_size(capsys):
    with pytest.raises(SystemExit) as stopped:
        call_command("ingest_worker", "--batch-size", "0")
    assert stopped.value.code == 2
    assert "--batch-size must be at least 1" in capsys.readouterr().err


# --- several workers, killed and stopped workers (PostgreSQL: processes share the database) ------

postgresql = pytest.mark.skipif(
    "DATABASE_URL" not in os.environ or not os.environ["DATABASE_URL"].startswith("postgres"),
    reason="needs PostgreSQL (DATABASE_URL=postgres://...): row locks and other processes",
)


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def start_worker(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "ingest_worker", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url(),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def queue_readings(integration: DeviceIntegration, count: int, *, devices: int = 5) -> None:
    """`count` queued deliveries as the view stores them (a distinct reading each)."""
    base = timezone.now() - timedelta(minutes=5)
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            integration=integration,
            outcome=Outcome.QUEUED,
            headers=ce_headers(device=f"dev-{n % devices}", time=base + timedelta(seconds=n)),
            body=json.dumps({"n": n}).encode(),
            content_type="application/json",
        )
        for n in range(count)
    )


def wait_for(condition, *, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@postgresql
@pytest.mark.django_db(transaction=True)
def test_two_workers_share_the_queue_and_store_each_delivery_once(queued):
    queue_readings(queued, 2_000)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            while ingest_queued(batch_size=100):
                pass
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert TelemetryRecord.objects.count() == 2_000
    assert set(WebhookDelivery.objects.values_list("outcome", "attempts").distinct()) == {
        ("processed", 1)
    }


@postgresql
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_batch_leaves_its_batch_queued_for_the_next(queued):
    queue_readings(queued, 300, devices=1)
    Device.objects.create(integration=queued, external_id="dev-0", name="dev-0")
    # Hold the device's row: the worker's batch stops at its last_seen UPDATE, mid-transaction.
    blocker = connections.create_connection("default")
    blocker.set_autocommit(False)
    with blocker.cursor() as cursor:
        cursor.execute("SELECT 1 FROM devices WHERE external_id = 'dev-0' FOR UPDATE")
    worker = start_worker("--batch-size", "100")
    try:
        wait_for(lambda: _waiting_on_a_lock())
        worker.kill()
        worker.wait(timeout=10)
    finally:
        blocker.rollback()
        blocker.close()

    assert WebhookDelivery.objects.filter(outcome=Outcome.QUEUED).count() == 300
    assert not TelemetryRecord.objects.exists()

    assert drain() == 300
    assert TelemetryRecord.objects.count() == 300
    assert set(WebhookDelivery.objects.values_list("attempts", flat=True)) == {1}


@postgresql
@pytest.mark.django_db(transaction=True)
def test_sigterm_lets_the_worker_finish_its_batch_and_exit(queued):
    queue_readings(queued, 50, devices=1)
    Device.objects.create(integration=queued, external_id="dev-0", name="dev-0")
    blocker = connections.create_connection("default")
    blocker.set_autocommit(False)
    with blocker.cursor() as cursor:
        cursor.execute("SELECT 1 FROM devices WHERE external_id = 'dev-0' FOR UPDATE")
    worker = start_worker("--batch-size", "50")
    try:
        wait_for(lambda: _waiting_on_a_lock())
        worker.send_signal(signal.SIGTERM)  # while the batch is in hand
    finally:
        blocker.rollback()
        blocker.close()
    output, _ = worker.communicate(timeout=30)

    assert worker.returncode == 0, output
    assert "50 deliveries stored" in output
    assert TelemetryRecord.objects.count() == 50
    assert not WebhookDelivery.objects.filter(outcome=Outcome.QUEUED).exists()


def _waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%%UPDATE%%devices%%'"
        )
        return cursor.fetchone()[0] > 0
