"""The push path as staff see it in the admin: re-process action, pipeline YAML, no secrets."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from integrations.models import DeviceIntegration, WebhookDelivery
from telemetry.models import TelemetryRecord

SECRET = "whsec-admin-0123456789-zyxw"
DEVICE = "686d5da09c3ca8d766c1672b"


@pytest.fixture
def strict(make_integration) -> DeviceIntegration:
    integration = make_integration(
        "strict", webhook_enabled=True, settings={"webhookCreatesDevices": False}
    )
    integration.add_webhook_secret(SECRET)
    integration.save()
    return integration


def push(client, integration, data):
    headers = {
        "Authorization": SECRET,
        "X-Gsync-Secret": SECRET,
        "Ce-Source": DEVICE,
        "Ce-Subject": integration.project_id,
        "Ce-Type": "io.golioth.data.v1/.s/sensor",
        "Ce-Time": (timezone.now() - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    body = data if isinstance(data, bytes) else json.dumps(data)
    return client.post(
        integration.webhook_path, body, content_type="application/json",
        headers=headers,
    )  # fmt: skip


def test_webhook_admin_reprocess_action_is_registered():
    model_admin = admin.site._registry[WebhookDelivery]
    assert "reprocess" in model_admin.get_actions(_staff_request())


def test_webhook_admin_reprocess_action_stores_a_rejected_delivery(client, admin_client, strict):
    push(client, strict, {"temp": 1})
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == "rejected"
    strict.settings = {**strict.settings, "webhookCreatesDevices": True}
    strict.save()

    response = admin_client.post(
        reverse("admin:integrations_webhookdelivery_changelist"),
        {"action": "reprocess", "_selected_action": [delivery.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert "Re-processed 1 deliveries: 1 processed" in response.content.decode()
    delivery.refresh_from_db()
    assert delivery.outcome == "processed"
    assert delivery.response_status == 202  # what Golioth got; a re-process answers nobody
    assert TelemetryRecord.objects.count() == 1


def test_webhook_admin_list_shows_device_and_http_status_and_finds_a_device(
    client, admin_client, strict
):
    push(client, strict, {"temp": 1})  # rejected: unknown device, answered 202
    push(client, strict, b"{broken")  # answered 400, no device
    other = WebhookDelivery.objects.create(
        integration=strict, device_external_id="other-device", response_status=200
    )
    url = reverse("admin:integrations_webhookdelivery_changelist")

    rows = admin_client.get(url).content.decode()
    found = admin_client.get(url, {"q": f" {DEVICE} "}).content.decode()

    assert "<th" in rows and ">HTTP<" in rows and ">Device<" in rows
    assert ">202<" in rows and ">400<" in rows and ">200<" in rows
    assert f"?q={DEVICE}" in rows  # the device links to its readings
    assert "malformed JSON" in rows
    assert DEVICE in found and "other-device" not in found
    assert f"/{other.pk}/change/" not in found


def test_webhook_admin_pages_never_show_a_secret(client, admin_client, strict):
    push(client, strict, {"temp": 1})
    push(client, strict, b"{broken")
    pages = [
        reverse("admin:integrations_deviceintegration_change", args=[strict.pk]),
        reverse("admin:integrations_webhookdelivery_changelist"),
        *(
            reverse("admin:integrations_webhookdelivery_change", args=[pk])
            for pk in WebhookDelivery.objects.values_list("pk", flat=True)
        ),
        reverse("admin:integrations_activitylog_changelist"),
    ]

    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        assert SECRET not in response.content.decode(), page


def test_webhook_admin_integration_page_shows_the_pipeline(admin_client, strict, settings):
    settings.GSYNC_PUBLIC_URL = "https://gsync.example.com"

    response = admin_client.get(
        reverse("admin:integrations_deviceintegration_change", args=[strict.pk])
    )

    html = response.content.decode()
    assert f"url: https://gsync.example.com/webhooks/golioth/{strict.webhook_token}/" in html
    assert "Authorization: $GSYNC_WEBHOOK_TOKEN" in html
    assert "type: inject-metadata" in html


def _staff_request():
    request = RequestFactory().get("/admin/")
    request.user = User(is_staff=True, is_superuser=True)
    return request


def test_webhook_admin_integration_page_explains_paths_and_default_pipelines(admin_client, strict):
    response = admin_client.get(
        reverse("admin:integrations_deviceintegration_change", args=[strict.pk])
    )

    html = response.content.decode()
    assert "Mirrored paths" in html
    assert "Disable other pipelines that also deliver these paths to LightDB Stream" in html
    assert "Buffered uploads" in html
