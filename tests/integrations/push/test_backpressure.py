"""Backpressure on PostgreSQL: while the database is too slow (another session holds a lock the
webhook needs), the webhook answers 503 + Retry-After instead of waiting, stores nothing it did
not answer 2xx for, and the sender's later retry is stored once.

The lock holder's session ends itself after LOCK_HELD_AT_MOST seconds: a webhook that waited
for it without a bound would then be answered 2xx, so a 503 shows that the wait was bounded.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from integrations.models import DeviceIntegration, WebhookDelivery
from integrations.push import backpressure
from integrations.push.queue import ingest_queued
from telemetry.models import TelemetryRecord
from tests.integrations.push.test_webhooks import DEVICE, SECRET, ce_headers, post, recent

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
LOCK_HELD_AT_MOST = 20
Outcome = WebhookDelivery.Outcome


@pytest.fixture(autouse=True)
def _postgresql_only(settings) -> Iterator[None]:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://...): statement_timeout, locks")
    settings.GSYNC_WEBHOOK_DB_TIMEOUT = 0.3
    backpressure.forget()
    yield
    backpressure.forget()


@contextmanager
def locked(table: str) -> Iterator[None]:
    """Another session holds `table` against writes (reads go on), as a long migration or a
    stuck transaction would."""
    blocker = connections.create_connection("default")
    blocker.set_autocommit(False)
    try:
        with blocker.cursor() as cursor:
            cursor.execute(f"SET idle_in_transaction_session_timeout = '{LOCK_HELD_AT_MOST}s'")
            cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        yield
    finally:
        blocker.rollback()
        blocker.close()


def make_hooked(make_integration, *, queued: bool) -> DeviceIntegration:
    integration = make_integration(
        "slow-db", webhook_enabled=True, settings={"webhookQueued": queued}
    )
    integration.add_webhook_secret(SECRET)
    integration.save()
    return integration


def push(client, integration, data, *, seconds: float = 0.0):
    return post(client, integration, data, headers=ce_headers(time=recent(seconds)))


def stored() -> list[dict]:
    return sorted((r.telemetry for r in TelemetryRecord.objects.all()), key=json.dumps)


def test_queued_webhook_answers_503_while_the_database_is_slow_and_the_retry_is_stored_once(
    client, make_integration
):
    hooked = make_hooked(make_integration, queued=True)
    assert push(client, hooked, {"temp": 1}, seconds=-5).status_code == 202

    with locked("webhook_deliveries"):
        slow = push(client, hooked, {"temp": 2})
        # Right after a timeout the process does not ask the database at all.
        with CaptureQueriesContext(connection) as queries:
            shed = push(client, hooked, {"temp": 2})

    assert slow.status_code == 503 and slow["Retry-After"] == "30"
    assert slow.json() == {"error": "the database did not answer in time, retry later"}
    assert shed.status_code == 503 and shed["Retry-After"] == "30"
    assert "too slow a moment ago" in shed.json()["error"]
    assert queries.captured_queries == []
    assert WebhookDelivery.objects.count() == 1  # the 503s stored nothing

    time.sleep(0.3)  # the sender retries later (GSYNC_WEBHOOK_DB_TIMEOUT of shedding)
    retry = push(client, hooked, {"temp": 2})
    assert retry.status_code == 202
    while ingest_queued():
        pass
    assert stored() == [{"temp": 1}, {"temp": 2}]
    assert set(WebhookDelivery.objects.values_list("outcome", flat=True)) == {Outcome.PROCESSED}


def test_synchronous_webhook_answers_503_when_storing_the_reading_is_slow(client, make_integration):
    hooked = make_hooked(make_integration, queued=False)
    assert push(client, hooked, {"temp": 1}, seconds=-5).json() == {"stored": 1, "duplicates": 0}

    with locked("device_telemetry_history"):
        slow = push(client, hooked, {"temp": 2})

    assert slow.status_code == 503 and slow["Retry-After"] == "30"
    failed = WebhookDelivery.objects.order_by("id").last()
    assert failed.outcome == Outcome.FAILED  # kept, with why: staff can re-process it
    assert "statement timeout" in failed.error
    time.sleep(0.3)
    assert push(client, hooked, {"temp": 2}).json() == {"stored": 1, "duplicates": 0}
    assert stored() == [{"temp": 1}, {"temp": 2}]


def test_synchronous_webhook_answers_503_when_the_delivery_cannot_be_kept(client, make_integration):
    hooked = make_hooked(make_integration, queued=False)
    assert push(client, hooked, {"temp": 1}, seconds=-5).status_code == 200

    with locked("webhook_deliveries"):
        slow = push(client, hooked, {"temp": 2})

    assert slow.status_code == 503
    assert WebhookDelivery.objects.count() == 1
    assert stored() == [{"temp": 1}]


def test_every_delivery_answered_2xx_is_kept_under_a_slow_database(
    live_server, make_integration, settings
):
    """Senders in parallel against a threaded server while the deliveries table is locked for a
    while: each one retries its 503s; in the end every reading is stored exactly once and every
    `queued` id answered is a stored delivery."""
    settings.GSYNC_WEBHOOK_MAX_WAITING = 2
    hooked = make_hooked(make_integration, queued=True)
    url = f"{live_server.url}/webhooks/golioth/{hooked.webhook_token}/"
    answers: dict[int, list[int]] = {}

    def send(n: int) -> int:
        """Send reading n until it is accepted; the id the webhook answered."""
        while True:
            body = json.dumps({"n": n}).encode()
            headers = {**ce_headers(time=recent(n / 1000)), "Authorization": SECRET}
            request = urllib.request.Request(
                url, body, {**headers, "Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answers.setdefault(n, []).append(response.status)
                    return json.load(response)["queued"]
            except urllib.error.HTTPError as exc:
                answers.setdefault(n, []).append(exc.code)
                assert exc.code == 503 and exc.headers["Retry-After"] == "30"
                time.sleep(0.2)

    with ThreadPoolExecutor(max_workers=6) as pool:
        with locked("webhook_deliveries"):
            futures = [pool.submit(send, n) for n in range(60)]
            time.sleep(1.5)  # the senders meet the lock
        ids = [future.result() for future in futures]
        connections.close_all()

    assert any(503 in codes for codes in answers.values()), "the lock never slowed a request"
    assert set(WebhookDelivery.objects.values_list("id", flat=True)) == set(ids)
    while ingest_queued():
        pass
    assert stored() == sorted(({"n": n} for n in range(60)), key=json.dumps)
    assert TelemetryRecord.objects.filter(device__external_id=DEVICE).count() == 60
