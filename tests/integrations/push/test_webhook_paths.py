"""The webhook keeps only the paths an integration mirrors (issue 8 §4)."""

from __future__ import annotations

import io
import json
from datetime import UTC, timedelta

import cbor2
import pytest
from django.core.management import call_command
from django.utils import timezone

from integrations.models import DeviceIntegration, WebhookDelivery
from integrations.push.deliveries import reprocess_deliveries
from telemetry.models import TelemetryRecord

SECRET = "whsec-paths-0123456789-abcdef"
DEVICE = "686d5da09c3ca8d766c1672b"


@pytest.fixture
def make_hooked(make_integration):
    def make(settings: dict | None = None) -> DeviceIntegration:
        integration = make_integration("paths", webhook_enabled=True, settings=settings)
        integration.add_webhook_secret(SECRET)
        integration.save()
        return integration

    return make


def push(client, integration, body: bytes, *, path: str, content_type: str):
    when = (timezone.now() - timedelta(seconds=10)).astimezone(UTC)
    headers = {
        "Authorization": SECRET,
        "Ce-Source": DEVICE,
        "Ce-Subject": integration.project_id,
        "Ce-Type": f"io.golioth.data.v1/.s/{path}",
        "Ce-Time": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    return client.generic(
        "POST", integration.webhook_path, body, content_type=content_type, headers=headers
    )


def sdk_log_line() -> bytes:
    # What the Golioth SDK sends to /logs (src/log.c): a CBOR map per line.
    return cbor2.dumps({"level": "info", "module": "app", "msg": "Sending temperature 21.5"})


def test_webhook_logs_delivery_is_kept_ignored_and_answered_200(client, make_hooked):
    integration = make_hooked()

    response = push(
        client, integration, sdk_log_line(), path="logs", content_type="application/cbor"
    )

    assert response.status_code == 200
    assert response.json() == {
        "stored": 0,
        "duplicates": 0,
        "ignored": "path /logs is not mirrored",
    }
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.error) == ("ignored", "path /logs is not mirrored")
    assert not TelemetryRecord.objects.exists()


def test_webhook_json_and_cbor_devices_are_both_stored(client, make_hooked):
    integration = make_hooked()
    json_body = json.dumps({"temp": 21.5}).encode()

    first = push(client, integration, json_body, path="sensor", content_type="application/json")
    second = push(
        client, integration, cbor2.dumps({"temp": 22}), path="env", content_type="application/cbor"
    )

    assert first.json() == second.json() == {"stored": 1, "duplicates": 0}
    stored = TelemetryRecord.objects.order_by("path").values_list("path", "telemetry")
    assert list(stored) == [("env", {"temp": 22}), ("sensor", {"temp": 21.5})]


def test_webhook_path_outside_the_mirrored_list_is_ignored(client, make_hooked):
    integration = make_hooked({"mirroredPaths": ["/env/*"]})
    body = json.dumps({"temp": 1}).encode()

    kept = push(client, integration, body, path="env/weather", content_type="application/json")
    other = push(client, integration, body, path="sensor", content_type="application/json")

    assert kept.json() == {"stored": 1, "duplicates": 0}
    assert other.status_code == 200
    assert other.json()["ignored"] == "path /sensor is not mirrored"
    assert list(TelemetryRecord.objects.values_list("path", flat=True)) == ["env/weather"]


def test_webhook_ignored_path_is_stored_when_reprocessed_after_the_setting_changes(
    client, make_hooked
):
    integration = make_hooked({"mirroredPaths": ["/env/*"]})
    push(client, integration, b'{"temp": 1}', path="sensor", content_type="application/json")
    assert not TelemetryRecord.objects.exists()

    integration.settings = {"mirroredPaths": ["/env/*", "/sensor"]}
    integration.save()
    result = reprocess_deliveries(WebhookDelivery.objects.select_related("integration"))

    assert result.stored == 1
    assert WebhookDelivery.objects.get().outcome == "processed"
    assert TelemetryRecord.objects.get().path == "sensor"


def test_reprocess_command_ignored_runs_them_again(client, make_hooked):
    integration = make_hooked({"mirroredPaths": ["/env/*"]})
    push(client, integration, b'{"temp": 1}', path="sensor", content_type="application/json")
    DeviceIntegration.objects.filter(pk=integration.pk).update(settings={})

    call_command("reprocess_webhooks", "--ignored", stdout=io.StringIO())

    assert WebhookDelivery.objects.get().outcome == "processed"
    assert TelemetryRecord.objects.count() == 1
