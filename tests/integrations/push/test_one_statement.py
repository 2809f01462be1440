"""The webhook's PostgreSQL fast path: the synchronous webhook's one-statement store
(integrations.push.one_statement), where the common delivery costs one statement and every
delivery leaves exactly the rows the general path (store the delivery, then process it) leaves;
and the prepared statements (integrations.push.prepared), planned once per connection and off
for poolers that cannot keep them."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from integrations.models import WebhookDelivery
from integrations.push import minutes, one_statement, view
from telemetry.models import Device, ReadingCount, TelemetryRecord
from tests.integrations.push.test_webhooks import DEVICE, SECRET, ce_headers, post, recent

Outcome = WebhookDelivery.Outcome


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's: data-modifying CTEs, prepared statements")


@pytest.fixture
def make_hooked(make_integration):
    def make(name: str, **settings):
        integration = make_integration(name, webhook_enabled=True, settings=settings)
        integration.add_webhook_secret(SECRET)
        integration.save()
        return integration

    return make


def test_a_known_devices_reading_is_stored_in_one_statement(client, make_hooked, settings):
    settings.GSYNC_WEBHOOK_CONFIG_SECONDS = 60  # as deployed: the integration read once a minute
    view.forget_integrations()
    hooked = make_hooked("fleet")
    assert post(client, hooked, {"temp": 1}, headers=ce_headers(time=recent(-9))).status_code == 200
    when = recent()

    with CaptureQueriesContext(connection) as queries:
        response = post(client, hooked, {"temp": 2}, headers=ce_headers(time=when))

    assert response.status_code == 200
    assert response.json() == {"stored": 1, "duplicates": 0}
    assert len(queries) == 1, [q["sql"][:120] for q in queries]
    delivery = WebhookDelivery.objects.latest("id")
    assert (delivery.outcome, delivery.response_status, delivery.attempts) == ("processed", 200, 1)
    assert (delivery.readings_stored, delivery.readings_duplicate) == (1, 0)
    assert delivery.processed_at is not None and delivery.device_external_id == DEVICE
    row = TelemetryRecord.objects.get(telemetry={"temp": 2})
    assert (row.device_timestamp, row.time_exact, row.source) == (when, True, "webhook")
    assert row.activity_id is not None
    device = Device.objects.get()
    assert (device.last_seen, device.status) == (when, "online")
    assert sum(ReadingCount.objects.values_list("readings", flat=True)) == 2

    with CaptureQueriesContext(connection) as queries:
        again = post(client, hooked, {"temp": 2}, headers=ce_headers(time=when))

    assert again.json() == {"stored": 0, "duplicates": 1} and len(queries) == 1
    repeat = WebhookDelivery.objects.latest("id")
    assert (repeat.outcome, repeat.readings_stored, repeat.readings_duplicate) == (
        "duplicate",
        0,
        1,
    )
    assert TelemetryRecord.objects.count() == 2


def deliveries_of_every_kind(client, hooked, settings, *, t) -> list[tuple[int, dict]]:
    """One of each case the statement takes, finishes on the general path, or leaves to it."""
    sent = [
        ({"temp": 1}, ce_headers(device="new-device", time=t)),  # unknown: added, then stored
        ({"temp": 2}, ce_headers(device="new-device", time=t + timedelta(seconds=1))),
        ({"temp": 2}, ce_headers(device="new-device", time=t + timedelta(seconds=1))),  # repeat
        ({"temp": 0}, ce_headers(device="new-device", time=t - timedelta(seconds=5))),  # older
        ({"temp": 3}, ce_headers(device="no-time")),  # Golioth's time missing: approximate
        ({"temp": 4}, ce_headers(device="no-time", time=t + timedelta(seconds=2))),
        # Golioth's time for the approximate one: corrects it
        ({"temp": 3}, ce_headers(device="no-time", time=t + timedelta(seconds=9))),
        ({"temp": 5}, {**ce_headers(time=t), "Ce-Subject": "another-project"}),
        ({"big": "x" * 300}, ce_headers(device="new-device", time=t)),  # over the reading limit
        ("not a reading", ce_headers(device="new-device", time=t)),
    ]
    settings.GSYNC_MAX_READING_BYTES = 200
    answers = []
    for body, headers in sent:
        response = post(client, hooked, body, headers=headers)
        answers.append((response.status_code, response.json()))
    return answers


def snapshot() -> dict:
    """The rows a user sees, without ids and the times gsync takes from its own clock."""
    deliveries = [
        (d.outcome, d.error, d.readings_stored, d.readings_duplicate, d.attempts,
         d.response_status, d.device_external_id, d.processed_at is None, d.traceback)
        for d in WebhookDelivery.objects.order_by("id")
    ]  # fmt: skip
    readings = TelemetryRecord.objects.order_by("device__external_id", "device_timestamp")
    return {
        "deliveries": deliveries,
        "readings": [
            (r.device.external_id, r.path, r.telemetry, r.time_exact, r.source, bool(r.activity_id))
            for r in readings
        ],
        "exact times": list(readings.filter(time_exact=True).values_list("device_timestamp")),
        # The approximate reading's time is gsync's clock: its device's last_seen is too.
        "devices": [
            (external_id, seen if external_id != "no-time" else None, status)
            for external_id, seen, status in Device.objects.order_by("external_id").values_list(
                "external_id", "last_seen", "status"
            )
        ],
        "counts": sum(ReadingCount.objects.values_list("readings", flat=True)),
    }


def test_every_kind_of_delivery_leaves_the_rows_the_general_path_leaves(
    client, make_hooked, settings, monkeypatch
):
    t = recent(-20)
    one = make_hooked("one-statement")
    via_statement = deliveries_of_every_kind(client, one, settings, t=t)
    with_statement = snapshot()
    WebhookDelivery.objects.all().delete()
    Device.objects.all().delete()  # and their readings
    minutes.forget_minute_entries()

    general = make_hooked("general")
    monkeypatch.setattr(view, "store_at_once", lambda *args, **kwargs: None)
    via_general = deliveries_of_every_kind(client, general, settings, t=t)

    assert via_statement == via_general
    assert snapshot() == with_statement
    outcomes = [row[0] for row in with_statement["deliveries"]]
    assert outcomes == [
        "processed", "processed", "duplicate", "processed", "processed", "processed",
        "duplicate", "rejected", "rejected", "failed",
    ]  # fmt: skip
    assert with_statement["counts"] == 5


@pytest.mark.django_db(transaction=True)  # autocommit, as served: the failed statement ends alone
def test_a_statement_that_fails_leaves_the_delivery_to_the_general_path(
    client, make_hooked, monkeypatch, caplog
):
    hooked = make_hooked("fleet")
    assert post(client, hooked, {"temp": 1}, headers=ce_headers(time=recent(-9))).status_code == 200

    def broken(*args, **kwargs):
        return "INSERT INTO no_such_table SELECT 1 RETURNING 1", {}

    monkeypatch.setattr(one_statement, "exact_reading_insert", broken)
    with caplog.at_level(logging.WARNING, logger="integrations.push.one_statement"):
        response = post(client, hooked, {"temp": 2}, headers=ce_headers(time=recent()))

    assert response.json() == {"stored": 1, "duplicates": 0}
    assert "the general path takes it" in caplog.text
    assert list(WebhookDelivery.objects.order_by("id").values_list("outcome", flat=True)) == [
        Outcome.PROCESSED,
        Outcome.PROCESSED,
    ]
    assert sorted(r.telemetry["temp"] for r in TelemetryRecord.objects.all()) == [1, 2]


# --- prepared statements ----------------------------------------------------------------------


def prepared_statements() -> list[tuple[str, int]]:
    """This connection's prepared statements: the start of each and how often it ran."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT left(statement, 40), generic_plans + custom_plans FROM pg_prepared_statements "
            "ORDER BY 1"
        )
        return cursor.fetchall()


def push_each(client, integration, count: int) -> list[int]:
    return [
        post(client, integration, {"n": n}, headers=ce_headers(time=recent(n))).status_code
        for n in range(count)
    ]


def test_the_webhooks_statements_are_prepared_once_per_connection(client, make_hooked):
    queued, synchronous = make_hooked("queued", webhookQueued=True), make_hooked("sync")
    # Adds the device: the statement runs, finds no device, and the general path adds it.
    push_each(client, synchronous, 1)

    assert push_each(client, queued, 4) == [202] * 4
    assert push_each(client, synchronous, 4) == [200] * 4
    list(Device.objects.all()), list(TelemetryRecord.objects.all())  # Django's own statements

    statements = prepared_statements()
    assert [start for start, _ in statements] == [
        'INSERT INTO "webhook_deliveries" ("integ',
        "WITH seen AS (UPDATE devices SET last_se",
    ]
    assert [runs for _, runs in statements] == [4, 5]
    assert TelemetryRecord.objects.count() == 5
    assert WebhookDelivery.objects.filter(outcome="queued").count() == 4


def test_behind_a_pooler_nothing_is_prepared(client, make_hooked, settings):
    settings.GSYNC_WEBHOOK_PREPARED = False
    before = prepared_statements()  # what earlier tests on this connection prepared
    queued, synchronous = make_hooked("queued", webhookQueued=True), make_hooked("sync")

    assert push_each(client, queued, 3) == [202] * 3
    assert push_each(client, synchronous, 3) == [200] * 3

    assert prepared_statements() == before  # nothing new, nothing run again
    assert TelemetryRecord.objects.count() == 3
