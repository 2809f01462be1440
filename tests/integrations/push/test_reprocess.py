from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from integrations.models import ActivityLog, DeviceIntegration, WebhookDelivery
from integrations.push.deliveries import reprocess_deliveries
from telemetry.models import Device, TelemetryRecord

SECRET = "whsec-reprocess-0123456789"
DEVICE = "686d5da09c3ca8d766c1672b"


@pytest.fixture
def strict(make_integration) -> DeviceIntegration:
    """Refuses readings from devices it does not know yet."""
    integration = make_integration(
        "strict", webhook_enabled=True, settings={"webhookCreatesDevices": False}
    )
    integration.add_webhook_secret(SECRET)
    integration.save()
    return integration


def push(client, integration, data, *, device=DEVICE, when=None):
    when = when or timezone.now() - timedelta(seconds=5)
    headers = {
        "Authorization": SECRET,
        "Ce-Source": device,
        "Ce-Subject": integration.project_id,
        "Ce-Type": "io.golioth.data.v1/.s/sensor",
        "Ce-Time": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    return client.post(
        integration.webhook_path, json.dumps(data), content_type="application/json",
        headers=headers,
    )  # fmt: skip


def stored_failure(integration, body: bytes, *, days_ago: float = 0) -> WebhookDelivery:
    """A delivery an earlier gsync failed on (the body is fine; the code was not)."""
    return WebhookDelivery.objects.create(
        integration=integration,
        received_at=timezone.now() - timedelta(days=days_ago),
        headers={"Ce-Source": DEVICE, "Ce-Type": "io.golioth.data.v1/.s/sensor"},
        body=body,
        content_type="application/json",
        outcome=WebhookDelivery.Outcome.FAILED,
        error="KeyError: 'x'",
        attempts=1,
    )


def test_reprocess_rejected_delivery_after_allowing_new_devices(client, strict):
    assert push(client, strict, {"temp": 1}).status_code == 202
    strict.settings = {**strict.settings, "webhookCreatesDevices": True}
    strict.save()

    result = reprocess_deliveries(WebhookDelivery.objects.all())

    assert (result.total, result.stored, result.failed) == (1, 1, 0)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.error, delivery.attempts) == ("processed", "", 2)
    row = TelemetryRecord.objects.get()
    assert (row.device.external_id, row.source, row.telemetry) == (DEVICE, "webhook", {"temp": 1})
    entry = ActivityLog.objects.get(activity_type="webhook_reprocessed")
    assert (entry.status, entry.trigger, entry.readings_inserted) == ("success", "admin", 1)
    assert row.activity_id == entry.pk


def test_reprocess_skips_deliveries_already_processed(client, strict, make_device):
    make_device(strict, DEVICE)
    push(client, strict, {"temp": 1})
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == "processed"

    result = reprocess_deliveries([delivery])

    assert (result.total, result.skipped) == (0, 1)
    delivery.refresh_from_db()
    assert (delivery.outcome, delivery.attempts) == ("processed", 1)
    assert TelemetryRecord.objects.count() == 1


def test_reprocess_twice_stores_once(strict, make_device):
    make_device(strict, DEVICE)
    delivery = stored_failure(strict, b'{"temp": 2}')

    reprocess_deliveries([delivery])
    delivery.outcome = WebhookDelivery.Outcome.FAILED
    second = reprocess_deliveries([delivery])

    assert (second.stored, second.duplicates) == (0, 1)
    assert TelemetryRecord.objects.count() == 1


def test_reprocess_command_failed_runs_them_again(strict, make_device):
    make_device(strict, DEVICE)
    stored_failure(strict, b'{"temp": 3}')
    out = StringIO()

    call_command("reprocess_webhooks", "--failed", stdout=out)

    assert "Re-processed 1 deliveries: 1 processed; 1 readings stored." in out.getvalue()
    assert WebhookDelivery.objects.get().outcome == "processed"
    assert ActivityLog.objects.get(activity_type="webhook_reprocessed").trigger == "manual"


def test_reprocess_command_since_leaves_older_deliveries(strict, make_device):
    make_device(strict, DEVICE)
    old = stored_failure(strict, b'{"temp": 4}', days_ago=3)
    new = stored_failure(strict, b'{"temp": 5}')

    call_command("reprocess_webhooks", "--failed", "--since", "1d", stdout=StringIO())

    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.outcome, new.outcome) == ("failed", "processed")


def test_reprocess_command_exits_non_zero_when_still_failing(strict):
    stored_failure(strict, b"{still broken")

    with pytest.raises(CommandError, match="1 deliveries still fail") as raised:
        call_command("reprocess_webhooks", "--failed", stdout=StringIO())

    assert raised.value.returncode == 1
    delivery = WebhookDelivery.objects.get()
    assert (delivery.outcome, delivery.attempts) == ("failed", 2)
    assert delivery.error.startswith("malformed JSON")


def test_reprocess_command_needs_a_selection(strict):
    with pytest.raises(CommandError, match="--failed, --rejected, --ignored and/or --id"):
        call_command("reprocess_webhooks", stdout=StringIO())


def test_reprocess_command_unknown_integration(strict):
    with pytest.raises(CommandError, match="No integration named 'nope'"):
        call_command("reprocess_webhooks", "--failed", "--integration", "nope", stdout=StringIO())


def test_reprocess_command_rejected_and_integration(client, strict, make_integration):
    push(client, strict, {"temp": 1})
    Device.objects.create(integration=strict, external_id=DEVICE, name="added by hand")
    out = StringIO()

    call_command("reprocess_webhooks", "--rejected", "--integration", "strict", stdout=out)

    assert "1 processed" in out.getvalue()
    assert TelemetryRecord.objects.count() == 1


def test_prune_webhooks_command_uses_retention_setting(strict, settings):
    settings.GSYNC_WEBHOOK_RETENTION_DAYS = 7
    stored_failure(strict, b"{}", days_ago=8)
    stored_failure(strict, b"{}", days_ago=1)
    out = StringIO()

    call_command("prune_webhooks", stdout=out)

    assert "Deleted 1 webhook deliveries older than" in out.getvalue()
    assert WebhookDelivery.objects.count() == 1
