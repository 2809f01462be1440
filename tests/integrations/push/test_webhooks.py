from __future__ import annotations

import io
import json
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import cbor2
import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from integrations.models import ActivityLog, DeviceIntegration, WebhookDelivery
from integrations.push.minutes import forget_minute_entries, roll_up_webhook_minutes
from integrations.scheduling import dispatch_due_integrations
from telemetry.models import Device, TelemetryRecord

SECRET = "whsec-test-0123456789-abcdef"
DEVICE = "686d5da09c3ca8d766c1672b"


@pytest.fixture
def hooked(make_integration) -> DeviceIntegration:
    integration = make_integration("pushed", webhook_enabled=True)
    integration.add_webhook_secret(SECRET)
    integration.save()
    return integration


def recent(seconds: float = 0) -> datetime:
    return (timezone.now() - timedelta(seconds=30) + timedelta(seconds=seconds)).astimezone(UTC)


def ce_headers(*, device: str = DEVICE, path: str = "sensor", time: datetime | None = None):
    headers = {
        "Ce-Id": "0b6f3d1e-6c44-4f7e-a1a9-2c0f5f0c8e11",
        "Ce-Source": device,
        "Ce-Specversion": "1.0",
        "Ce-Subject": "sim-project",
        "Ce-Type": f"io.golioth.data.v1/.s/{path}",
    }
    if time is not None:
        headers["Ce-Time"] = time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return headers


def post(
    client,
    integration,
    body,
    *,
    content_type="application/json",
    headers=None,
    secret=SECRET,
    **extra,
):
    headers = dict(headers or {})
    if secret is not None:
        headers.setdefault("Authorization", secret)
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return client.generic(
        "POST", integration.webhook_path, body, content_type=content_type, headers=headers, **extra
    )


def envelope(data, *, device=DEVICE, when: datetime | None = None):
    when = when or recent()
    micros = int(when.timestamp()) * 1_000_000 + when.microsecond
    return {
        "data": data,
        "device_id": device,
        "project_id": "sim-project",
        "timestamp": {"seconds": micros // 1_000_000, "nanos": (micros % 1_000_000) * 1000},
    }


# --- the three shapes ----------------------------------------------------------------------------


def test_webhook_plain_json_stores_device_path_time_and_payload(client, hooked):
    when = recent()

    response = post(client, hooked, {"temp": 21.5, "hum": 40}, headers=ce_headers(time=when))

    assert response.status_code == 200
    assert response.json() == {"stored": 1, "duplicates": 0}
    row = TelemetryRecord.objects.get()
    assert row.device.external_id == DEVICE
    assert (row.path, row.device_timestamp, row.time_exact) == ("sensor", when, True)
    assert row.telemetry == {"temp": 21.5, "hum": 40}
    assert row.source == "webhook"
    device = Device.objects.get()
    assert (device.name, device.last_seen, device.status) == (DEVICE, when, "online")
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.response_status) == ("processed", 200)
    assert delivery.device_external_id == DEVICE


def test_webhook_inject_metadata_takes_time_from_the_body(client, hooked):
    when = recent(-5)
    headers = ce_headers(path="env/weather", time=recent())

    response = post(client, hooked, envelope({"temp": 3}, when=when), headers=headers)

    assert response.json() == {"stored": 1, "duplicates": 0}
    row = TelemetryRecord.objects.get()
    assert (row.path, row.device_timestamp, row.telemetry) == ("env/weather", when, {"temp": 3})


def test_webhook_legacy_stream_reads_the_device_from_the_body(client, hooked):
    headers = {
        "Ce-Source": "golioth/app/gateway/coap",
        "Ce-Subject": "stream",
        "Ce-Type": "DEVICE_STREAM_TYPE",
    }

    response = post(client, hooked, envelope({"sensor": {"temp": 1}}), headers=headers)

    assert response.status_code == 200
    assert TelemetryRecord.objects.get().device.external_id == DEVICE
    assert not Device.objects.filter(external_id="golioth/app/gateway/coap").exists()


def test_webhook_legacy_non_stream_event_is_kept_and_ignored(client, hooked):
    headers = {"Ce-Source": "golioth/app/gateway/coap", "Ce-Type": "DEVICE_LOG_ENTRY_TYPE"}

    response = post(client, hooked, {"device_id": DEVICE, "message": "boot"}, headers=headers)

    assert response.status_code == 200
    assert response.json()["stored"] == 0
    assert "DEVICE_LOG_ENTRY_TYPE" in response.json()["ignored"]
    assert WebhookDelivery.objects.get().outcome == "ignored"
    assert not TelemetryRecord.objects.exists()


def test_webhook_cbor_and_json_of_one_reading_are_one_row(client, hooked):
    body = envelope({"temp": 21.5, "tags": ["a", "b"]})

    first = post(
        client, hooked, cbor2.dumps(body), content_type="application/cbor", headers=ce_headers()
    )
    second = post(client, hooked, body, headers=ce_headers())

    assert first.json() == {"stored": 1, "duplicates": 0}
    assert second.json() == {"stored": 0, "duplicates": 1}
    assert TelemetryRecord.objects.count() == 1
    outcomes = list(WebhookDelivery.objects.order_by("id").values_list("outcome", flat=True))
    assert outcomes == ["processed", "duplicate"]


def test_webhook_without_golioth_time_stores_receive_time_as_approximate(client, hooked):
    response = post(client, hooked, {"temp": 7}, headers=ce_headers(time=None))

    assert response.status_code == 200
    row = TelemetryRecord.objects.get()
    assert row.time_exact is False
    assert row.device_timestamp == WebhookDelivery.objects.get().received_at


def test_webhook_with_time_corrects_the_approximate_copy_of_the_same_reading(client, hooked):
    first = post(client, hooked, {"temp": 7}, headers=ce_headers(time=None))
    approximate = TelemetryRecord.objects.get()
    when = approximate.device_timestamp - timedelta(seconds=3)

    again = post(client, hooked, {"temp": 7}, headers=ce_headers(time=when))
    other = post(client, hooked, {"temp": 8}, headers=ce_headers(time=when))

    assert first.json() == {"stored": 1, "duplicates": 0}
    assert again.json() == {"stored": 0, "duplicates": 1}
    assert other.json() == {"stored": 1, "duplicates": 0}
    row = TelemetryRecord.objects.get(pk=approximate.pk)
    assert (row.device_timestamp, row.time_exact) == (when, True)
    assert TelemetryRecord.objects.count() == 2


def test_webhook_without_time_after_the_exact_copy_is_a_duplicate(client, hooked):
    post(client, hooked, {"temp": 7}, headers=ce_headers(time=recent(25)))

    response = post(client, hooked, {"temp": 7}, headers=ce_headers(time=None))

    assert response.json() == {"stored": 0, "duplicates": 1}
    assert TelemetryRecord.objects.get().time_exact is True


def test_webhook_moves_last_seen_forward_only_and_status_follows(client, hooked, make_device):
    old = timezone.now() - timedelta(hours=3)
    make_device(hooked, DEVICE, status="online", last_seen=old + timedelta(minutes=1))

    post(client, hooked, {"temp": 1}, headers=ce_headers(time=old))
    device = Device.objects.get()
    assert (device.last_seen, device.status) == (old + timedelta(minutes=1), "offline")

    when = recent()
    post(client, hooked, {"temp": 2}, headers=ce_headers(time=when))
    device.refresh_from_db()
    assert (device.last_seen, device.status) == (when, "online")


def test_webhook_nests_payload_when_the_integration_says_so(client, make_integration):
    integration = make_integration(
        "legacy", webhook_enabled=True, settings={"payloadsNestedUnderPath": True}
    )
    integration.add_webhook_secret(SECRET)
    integration.save()

    post(client, integration, {"temp": 1}, headers=ce_headers(time=recent()))

    assert TelemetryRecord.objects.get().telemetry == {"sensor": {"temp": 1}}


def test_webhook_known_device_keeps_its_name(client, hooked, make_device):
    make_device(hooked, DEVICE, name="Boiler room")

    post(client, hooked, {"temp": 1}, headers=ce_headers(time=recent()))

    assert list(Device.objects.values_list("name", flat=True)) == ["Boiler room"]


def test_webhook_unknown_device_rejected_when_integration_does_not_create(client, make_integration):
    integration = make_integration(
        "strict", webhook_enabled=True, settings={"webhookCreatesDevices": False}
    )
    integration.add_webhook_secret(SECRET)
    integration.save()

    response = post(client, integration, {"temp": 1}, headers=ce_headers(time=recent()))

    assert response.status_code == 202
    assert "unknown device" in response.json()["rejected"]
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.response_status) == ("rejected", 202)
    assert delivery.device_external_id == DEVICE  # kept for the deliveries list's search
    assert "unknown device" in delivery.error
    assert not Device.objects.exists()
    assert not TelemetryRecord.objects.exists()


def test_webhook_from_another_project_is_rejected(client, hooked):
    headers = {**ce_headers(time=recent()), "Ce-Subject": "someone-elses-project"}

    response = post(client, hooked, {"temp": 1}, headers=headers)

    assert response.status_code == 202
    assert "someone-elses-project" in response.json()["rejected"]
    assert not TelemetryRecord.objects.exists()


# --- activity ------------------------------------------------------------------------------------


def test_webhook_rolls_deliveries_of_one_minute_into_one_activity_entry(client, hooked):
    when = recent()
    post(client, hooked, {"n": 1}, headers=ce_headers(time=when))
    post(client, hooked, {"n": 1}, headers=ce_headers(time=when))
    post(client, hooked, b"{", headers=ce_headers(time=when))

    rolled_up = roll_up_webhook_minutes(now=timezone.now() + timedelta(minutes=2))

    entries = ActivityLog.objects.filter(activity_type="webhook_received")
    minutes = {
        d.received_at.replace(second=0, microsecond=0) for d in WebhookDelivery.objects.all()
    }
    assert entries.count() == rolled_up == len(minutes)
    totals = [
        (e.deliveries, e.readings_fetched, e.readings_inserted, e.readings_duplicate, e.api_calls)
        for e in entries
    ]
    assert tuple(map(sum, zip(*totals, strict=True))) == (3, 2, 1, 1, 0)
    assert any(e.status == "partial" and "malformed JSON" in e.error_message for e in entries)
    assert TelemetryRecord.objects.get().activity_id in {e.pk for e in entries}


def test_webhook_activity_entry_is_started_until_its_minute_is_rolled_up(client, hooked):
    post(client, hooked, {"n": 1}, headers=ce_headers(time=recent()))
    entry = ActivityLog.objects.get(activity_type="webhook_received")
    minute_over = entry.started_at + timedelta(minutes=1, seconds=20)

    assert (entry.status, entry.deliveries, entry.completed_at) == ("started", 0, None)
    assert roll_up_webhook_minutes(now=entry.started_at + timedelta(seconds=59)) == 0
    assert roll_up_webhook_minutes(now=minute_over) == 1
    assert roll_up_webhook_minutes(now=minute_over) == 0  # once

    entry.refresh_from_db()
    assert (entry.status, entry.deliveries, entry.readings_inserted) == ("success", 1, 1)
    assert entry.completed_at == WebhookDelivery.objects.get().processed_at


def test_webhook_request_of_a_new_minute_rolls_up_nothing(client, hooked, monkeypatch):
    first = timezone.now().replace(second=30, microsecond=0) - timedelta(minutes=5)
    monkeypatch.setattr(timezone, "now", lambda: first)
    post(client, hooked, {"n": 1}, headers=ce_headers(time=first))
    post(client, hooked, {"n": 1}, headers=ce_headers(time=first))
    monkeypatch.setattr(timezone, "now", lambda: first + timedelta(minutes=2))

    with CaptureQueriesContext(connection) as queries:
        response = post(client, hooked, {"n": 2}, headers=ce_headers(time=first))

    assert response.status_code == 200
    # Without the bound PostgreSQL statements carry (integrations.push.backpressure).
    bound = re.compile(r"^SET LOCAL STATEMENT_TIMEOUT = \d+; ")
    statements = [bound.sub("", q["sql"].upper()) for q in queries.captured_queries]
    assert not [sql for sql in statements if "FOR UPDATE" in sql]
    activity = [sql for sql in statements if "INTEGRATION_ACTIVITY_LOG" in sql]
    # This minute's entry: looked for, then added.
    assert len(activity) == 2
    assert activity[0].startswith("SELECT") and activity[1].startswith("INSERT")
    entries = ActivityLog.objects.filter(activity_type="webhook_received").order_by("started_at")
    summary = [(e.status, e.deliveries, e.readings_inserted) for e in entries]
    assert summary == [("started", 0, 0), ("started", 0, 0)]


def test_webhook_minutes_are_rolled_up_by_the_dispatcher(client, hooked, make_device):
    when = recent()
    make_device(hooked, DEVICE, status="online", last_seen=recent(-60))
    post(client, hooked, {"n": 1}, headers=ce_headers(time=when))
    post(client, hooked, {"n": 1}, headers=ce_headers(time=when))
    post(client, hooked, b"[1]", headers=ce_headers(time=when))
    entry = ActivityLog.objects.get(activity_type="webhook_received")

    dispatch_due_integrations(now=entry.started_at + timedelta(minutes=2))

    entry.refresh_from_db()
    counts = (entry.deliveries, entry.readings_fetched, entry.readings_inserted)
    assert (entry.status, *counts, entry.readings_duplicate) == ("partial", 3, 2, 1, 1)
    assert (entry.api_calls, entry.devices_seen) == (0, 0)
    failed = WebhookDelivery.objects.get(outcome="failed")
    assert entry.error_message == f"delivery {failed.pk}: {failed.error}"
    assert entry.completed_at == max(d.processed_at for d in WebhookDelivery.objects.all())


def test_webhook_processes_of_one_minute_share_its_entry(client, hooked, monkeypatch):
    now = timezone.now().replace(second=10)
    monkeypatch.setattr(timezone, "now", lambda: now)
    post(client, hooked, {"n": 1}, headers=ce_headers(time=recent()))
    forget_minute_entries()  # as another process, which has cached no entry yet
    monkeypatch.setattr(timezone, "now", lambda: now + timedelta(seconds=40))
    post(client, hooked, {"n": 2}, headers=ce_headers(time=recent()))

    entry = ActivityLog.objects.get(activity_type="webhook_received")
    assert set(TelemetryRecord.objects.values_list("activity_id", flat=True)) == {entry.pk}


@pytest.mark.django_db(transaction=True)
def test_webhook_concurrent_first_deliveries_add_one_minute_entry(hooked):
    now, start = timezone.now(), threading.Barrier(4)

    def first_writer() -> int:
        start.wait()
        try:
            return ActivityLog.objects.minute_entry(hooked, at=now)
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        ids = set(pool.map(lambda _: first_writer(), range(4)))

    assert len(ids) == 1
    assert ActivityLog.objects.filter(activity_type="webhook_received").count() == 1


def test_webhook_minute_has_one_entry_in_the_database(hooked):
    # What makes a lost race of first writers find the winner's entry, across processes.
    minute = timezone.now().replace(second=0, microsecond=0)
    ActivityLog.objects.minute_entry(hooked, at=minute + timedelta(seconds=5))

    with pytest.raises(IntegrityError), transaction.atomic():
        ActivityLog.objects.start(hooked, activity_type="webhook_received", started_at=minute)

    ActivityLog.objects.start(hooked, activity_type="sync_import", started_at=minute)
    assert ActivityLog.objects.filter(activity_type="webhook_received").count() == 1


def test_webhook_few_queries_for_a_known_device(
    client, hooked, make_device, django_assert_max_num_queries, monkeypatch
):
    # Mid-minute, so the measured delivery finds this minute's activity entry known already.
    now = timezone.now().replace(second=30)
    monkeypatch.setattr(timezone, "now", lambda: now)
    make_device(hooked, DEVICE, status="online", last_seen=recent(-60))
    post(client, hooked, {"warm": "up"}, headers=ce_headers(time=recent(-10)))

    # integration, delivery, (BEGIN), device, reading, outcome, (COMMIT)
    with django_assert_max_num_queries(7):
        response = post(client, hooked, {"temp": 2}, headers=ce_headers(time=recent()))

    assert response.json() == {"stored": 1, "duplicates": 0}
    assert Device.objects.get().last_seen == recent()


# --- refusals ------------------------------------------------------------------------------------


def test_webhook_unknown_token_is_404_and_keeps_nothing(client, hooked):
    response = client.post(
        "/webhooks/golioth/not-a-token/",
        b"{}",
        content_type="application/json",
        headers={"Authorization": SECRET},
    )

    assert response.status_code == 404
    assert response.json() == {"error": "not found"}
    assert not WebhookDelivery.objects.exists()


def test_webhook_disabled_integration_is_404(client, hooked):
    hooked.webhook_enabled = False
    hooked.save()

    response = post(client, hooked, {"temp": 1}, headers=ce_headers())

    assert response.status_code == 404
    assert not WebhookDelivery.objects.exists()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "wrong"}, {"X-Gsync-Secret": "nope"}])
def test_webhook_missing_or_wrong_secret_is_401_counted_and_logged(client, hooked, headers, caplog):
    caplog.set_level(logging.WARNING, logger="integrations.push.view")

    response = post(client, hooked, {"temp": 1}, headers={**ce_headers(), **headers}, secret=None)

    assert response.status_code == 401
    assert response.json() == {"error": "missing or wrong secret"}
    assert not WebhookDelivery.objects.exists()
    hooked.refresh_from_db()
    assert hooked.webhook_rejected_count == 1
    assert f"integration {hooked.pk}" in caplog.text
    assert "wrong" not in caplog.text.replace("a wrong secret", "") or not headers
    assert "nope" not in caplog.text


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": SECRET}, {"Authorization": f"Bearer {SECRET}"}, {"X-Gsync-Secret": SECRET}],
)
def test_webhook_accepts_the_secret_in_each_header(client, hooked, headers):
    response = post(client, hooked, {"temp": 1}, headers={**ce_headers(), **headers}, secret=None)

    assert response.status_code == 200


def test_webhook_secret_rotation_old_and_new_work_until_old_is_removed(client, hooked):
    new = hooked.add_webhook_secret()
    hooked.save()
    old_id = hooked.webhook_secrets[0]["id"]

    assert post(client, hooked, {"n": 1}, headers=ce_headers(), secret=SECRET).status_code == 200
    assert post(client, hooked, {"n": 2}, headers=ce_headers(), secret=new).status_code == 200

    hooked.remove_webhook_secrets([old_id])
    hooked.save()

    assert post(client, hooked, {"n": 3}, headers=ce_headers(), secret=SECRET).status_code == 401
    assert post(client, hooked, {"n": 4}, headers=ce_headers(), secret=new).status_code == 200


def test_webhook_never_stores_or_logs_a_secret(client, hooked, caplog):
    caplog.set_level(logging.DEBUG)
    headers = {
        **ce_headers(),
        "Cookie": "sessionid=abc",
        "X-Api-Key": "golioth-key-1",
        "X-Gsync-Secret": SECRET,
    }

    post(client, hooked, {"temp": 1}, headers=headers)
    post(client, hooked, b"{broken", headers=headers)
    post(client, hooked, {"temp": 1}, headers=ce_headers(), secret=SECRET[:-1])

    for delivery in WebhookDelivery.objects.all():
        stored = json.dumps(delivery.headers) + delivery.error + delivery.traceback
        assert SECRET not in stored
        assert "golioth-key-1" not in stored and "sessionid" not in stored
        assert delivery.headers["Authorization"] == "[redacted]"
        assert delivery.headers["X-Gsync-Secret"] == "[redacted]"
        assert delivery.headers["Ce-Source"] == DEVICE
    assert SECRET[:-1] not in caplog.text
    assert not ActivityLog.objects.filter(error_message__contains=SECRET[:-1]).exists()


def test_webhook_oversized_by_content_length_is_413_and_kept(client, hooked, settings):
    settings.GSYNC_WEBHOOK_MAX_BYTES = 100

    response = post(client, hooked, {"pad": "x" * 200}, headers=ce_headers())

    assert response.status_code == 413
    assert "100-byte limit" in response.json()["error"]
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, bytes(delivery.body)) == ("failed", b"")
    assert not TelemetryRecord.objects.exists()


def test_webhook_chunked_body_is_read_up_to_the_limit_only(client, hooked, settings):
    settings.GSYNC_WEBHOOK_MAX_BYTES = 100

    def chunked(body: bytes):
        # What gunicorn hands Django for a chunked body: no length, a stream that ends.
        environ = {
            "CONTENT_LENGTH": "",
            "wsgi.input_terminated": True,
            "wsgi.input": io.BytesIO(body),
        }
        return post(client, hooked, body, headers=ce_headers(), **environ)

    small = chunked(b'{"temp": 1}')
    large = chunked(b'{"pad": "' + b"x" * 10_000 + b'"}')

    assert small.status_code == 200
    assert large.status_code == 413
    assert TelemetryRecord.objects.count() == 1


def test_webhook_malformed_json_is_400_with_reason_and_kept_raw(client, hooked):
    response = post(client, hooked, b'{"temp": 21.', headers=ce_headers())

    assert response.status_code == 400
    assert response.json()["error"].startswith("malformed JSON")
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, bytes(delivery.body)) == ("failed", b'{"temp": 21.')
    assert delivery.error.startswith("malformed JSON")


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b'{"temp": 1}', "text/plain", 415, "unsupported Content-Type"),
        (b"", "application/json", 400, "empty body"),
        (b"[1, 2, 3]", "application/json", 400, "JSON list"),
        (b"17", "application/json", 400, "JSON number"),
        (b"null", "application/json", 400, "JSON null"),
        (b"[" * 10_000 + b"]" * 10_000, "application/json", 400, "nested deeper"),
        (b'{"t": "\xc3\x28"}', "application/json", 400, "not valid UTF-8"),
        (b"\xbf\x61", "application/cbor", 400, "malformed CBOR"),
        (b'{"temp": Infinity}', "application/json", 400, "Infinity"),
    ],
)
def test_webhook_bad_bodies_get_documented_status_and_are_kept(
    client, hooked, body, content_type, status, message
):
    response = post(client, hooked, body, content_type=content_type, headers=ce_headers())

    assert response.status_code == status
    assert message in response.json()["error"]
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, bytes(delivery.body)) == ("failed", body)
    assert delivery.response_status == status


def test_webhook_get_is_405_and_head_is_200_for_any_token(client, hooked):
    for path in (hooked.webhook_path, "/webhooks/golioth/unknown/"):
        assert client.get(path).status_code == 405
        head = client.head(path)
        assert head.status_code == 200
        assert head.content == b""
    assert not WebhookDelivery.objects.exists()


# --- database down -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_webhook_database_failure_is_503_and_the_delivery_kept(client, hooked):
    table = TelemetryRecord._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
    try:
        response = post(client, hooked, {"temp": 1}, headers=ce_headers(time=recent()))
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table}_away RENAME TO {table}")

    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert "retry" in response.json()["error"]
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.response_status) == ("failed", 503)
    assert "Traceback" in delivery.traceback
    assert not Device.objects.exists()  # rolled back with the rest of the work
