"""Hostile webhook requests (issue 9): cheap to refuse, each refusal with its reason, nothing
over the limits stored, no traceback or secret in the logs."""

from __future__ import annotations

import json
import logging

import pytest

from integrations.models import DeviceIntegration, WebhookDelivery

SECRET = "whsec-security-0123456789"
DEVICE = "686d5da09c3ca8d766c1672b"
CE_HEADERS = {
    "Ce-Source": DEVICE,
    "Ce-Subject": "sim-project",
    "Ce-Type": "io.golioth.data.v1/.s/sensor",
    "Ce-Time": "2026-03-01T12:00:00.123456Z",
}


@pytest.fixture
def hooked(make_integration) -> DeviceIntegration:
    integration = make_integration("hardened", webhook_enabled=True)
    integration.add_webhook_secret(SECRET)
    integration.save()
    return integration


def post(client, path, body, *, content_type="application/json", headers=None, secret=SECRET):
    headers = {**CE_HEADERS, **(headers or {})}
    if secret is not None:
        headers["Authorization"] = secret
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return client.generic("POST", path, body, content_type=content_type, headers=headers)


# --- defect 7: a NUL byte in the token -----------------------------------------------------------


@pytest.mark.parametrize("token", ["%00", "a%00b", "%C3%BF" * 40, "x" * 300, "%F0%9F%92%A9"])
def test_webhook_token_with_nul_or_odd_text_is_404_without_traceback(client, hooked, token, caplog):
    caplog.set_level(logging.INFO)

    response = post(client, f"/webhooks/golioth/{token}/", {"temp": 1})

    assert response.status_code == 404
    assert response.json() == {"error": "not found"}
    assert not WebhookDelivery.objects.exists()
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
