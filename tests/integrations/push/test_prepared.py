"""The webhook's statements are prepared on PostgreSQL (integrations.push.prepared): parsed and
planned once per connection, still bounded, and off for poolers that cannot keep them."""

from __future__ import annotations

import pytest
from django.db import connection

from integrations.models import WebhookDelivery
from telemetry.models import Device, TelemetryRecord
from tests.integrations.push.test_webhooks import SECRET, ce_headers, post, recent


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")


@pytest.fixture
def make_hooked(make_integration):
    def make(name: str, *, queued: bool):
        integration = make_integration(
            name, webhook_enabled=True, settings={"webhookQueued": queued}
        )
        integration.add_webhook_secret(SECRET)
        integration.save()
        return integration

    return make


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
    queued, synchronous = make_hooked("queued", queued=True), make_hooked("sync", queued=False)
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
    queued, synchronous = make_hooked("queued", queued=True), make_hooked("sync", queued=False)

    assert push_each(client, queued, 3) == [202] * 3
    assert push_each(client, synchronous, 3) == [200] * 3

    assert prepared_statements() == before  # nothing new, nothing run again
    assert TelemetryRecord.objects.count() == 3
