"""Push and pull of the same readings end as one row each, in either order, over real HTTP.

The simulator plays Golioth twice: it POSTs each webhook to a live gsync server exactly as a
pipeline would (headers and all) and keeps the reading in its stream, which `runsync` /
`sync_integration` then pulls through its REST API.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from integrations.models import DeviceIntegration, WebhookDelivery
from integrations.pull.sync import sync_integration
from telemetry.models import TelemetryRecord

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec-convergence-0123456789"
DEVICE = "686d5da09c3ca8d766c1672b"
AUTH = {"Authorization": SECRET}


@pytest.fixture
def pushed(golioth, golioth_integration) -> DeviceIntegration:
    golioth.add_device(id=DEVICE, name="Boiler room")
    golioth_integration.webhook_enabled = True
    # The synchronous answer (its counts); the queued path converges in test_webhook_queue.py.
    golioth_integration.settings = {
        **golioth_integration.settings,
        "settleSeconds": 0,
        "webhookQueued": False,
    }
    golioth_integration.add_webhook_secret(SECRET)
    golioth_integration.save()
    return golioth_integration


@pytest.fixture
def hook_url(live_server, pushed) -> str:
    return live_server.url + pushed.webhook_path


def minutes_ago(minutes: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=123456) - timedelta(minutes=minutes)


def pull(integration: DeviceIntegration, *, since: datetime):
    outcome = sync_integration(integration, trigger="manual", force=True, since=since)
    assert outcome.status == "success", outcome.error
    return outcome


@pytest.mark.parametrize(
    ("shape", "content_type"),
    [
        ("plain", "application/json"),
        ("inject-metadata", "application/json"),
        ("inject-metadata", "application/cbor"),
        ("legacy", "application/json"),
    ],
)
def test_convergence_webhook_then_pull_is_one_row_per_reading(
    golioth, pushed, hook_url, shape, content_type
):
    for n in range(3):
        response = golioth.send_webhook(
            hook_url, device_id=DEVICE, data={"temp": 20 + n}, shape=shape,
            content_type=content_type, time=minutes_ago(10 - n), headers=AUTH,
        )  # fmt: skip
        assert response.status_code == 200, response.text

    outcome = pull(pushed, since=minutes_ago(60))

    assert (outcome.fetched, outcome.inserted, outcome.duplicates) == (3, 0, 3)
    assert TelemetryRecord.objects.count() == 3
    assert set(TelemetryRecord.objects.values_list("source", flat=True)) == {"webhook"}
    assert set(TelemetryRecord.objects.values_list("time_exact", flat=True)) == {True}


def test_convergence_pull_then_webhook_is_a_duplicate(golioth, pushed, hook_url):
    times = [minutes_ago(10), minutes_ago(9)]
    for n, when in enumerate(times):
        golioth.add_reading(DEVICE, when, {"temp": 30 + n})
    out = StringIO()
    call_command("runsync", pushed.name, "--force", "--since", "1h", stdout=out)

    responses = [
        golioth.send_webhook(
            hook_url,
            device_id=DEVICE,
            data={"temp": 30 + n},
            time=when,
            store=False,
            headers=AUTH,
        )  # fmt: skip
        for n, when in enumerate(times)
    ]

    assert [r.json() for r in responses] == [{"stored": 0, "duplicates": 1}] * 2
    assert TelemetryRecord.objects.count() == 2
    assert set(TelemetryRecord.objects.values_list("source", flat=True)) == {"backfill"}
    assert set(WebhookDelivery.objects.values_list("outcome", flat=True)) == {"duplicate"}


def test_convergence_webhook_without_time_is_corrected_by_the_pull(golioth, pushed, hook_url):
    response = golioth.send_webhook(
        hook_url, device_id=DEVICE, data={"temp": 40}, include_ce_time=False, headers=AUTH
    )
    assert response.json() == {"stored": 1, "duplicates": 0}
    approximate = TelemetryRecord.objects.get()
    assert approximate.time_exact is False

    outcome = pull(pushed, since=minutes_ago(10))

    assert outcome.fetched == 1
    assert TelemetryRecord.objects.count() == 1
    row = TelemetryRecord.objects.get()
    assert (row.pk, row.source, row.time_exact) == (approximate.pk, "webhook", True)
    # Golioth's own time: taken before the webhook left, so just before gsync received it.
    received = WebhookDelivery.objects.get().received_at
    assert received - timedelta(seconds=5) < row.device_timestamp < received


def test_convergence_nested_pipeline_payloads_match(golioth, pushed, hook_url):
    pushed.settings = {**pushed.settings, "payloadsNestedUnderPath": True}
    pushed.save()
    golioth.send_webhook(
        hook_url, device_id=DEVICE, data={"temp": 50}, path="env", time=minutes_ago(5),
        nest_under_path=True, headers=AUTH,
    )  # fmt: skip

    outcome = pull(pushed, since=minutes_ago(60))

    assert (outcome.fetched, outcome.duplicates) == (1, 1)
    row = TelemetryRecord.objects.get()
    assert (row.telemetry, row.path) == ({"env": {"temp": 50}}, "env")
