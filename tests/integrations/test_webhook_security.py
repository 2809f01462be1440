"""Hostile webhook requests (issue 9): cheap to refuse, each refusal with its reason, nothing
over the limits stored, no traceback or secret in the logs."""

from __future__ import annotations

import json
import logging

import cbor2
import pytest

from integrations.models import DeviceIntegration, WebhookDelivery
from integrations.webhooks import reprocess_deliveries

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


# --- defect 9: impossible Ce-Time offsets, one "malformed JSON" prefix ---------------------------


@pytest.mark.parametrize("offset", ["+99:99", "-24:00", "+12:60", "+2400"])
def test_webhook_ce_time_with_an_impossible_offset_is_400(client, hooked, offset):
    headers = {"Ce-Time": f"2026-03-01T12:00:00{offset}"}

    response = post(client, hooked.webhook_path, {"temp": 1}, headers=headers)

    assert response.status_code == 400
    assert "offset" in response.json()["error"]
    assert not hooked.readings.exists()
    assert WebhookDelivery.objects.get().outcome == "failed"


def test_webhook_ce_time_with_the_largest_real_offset_is_stored(client, hooked):
    headers = {"Ce-Time": "2026-03-01T12:00:00-23:59"}

    response = post(client, hooked.webhook_path, {"temp": 1}, headers=headers)

    assert response.json() == {"stored": 1, "duplicates": 0}
    stored = hooked.readings.get().device_timestamp
    assert stored.isoformat() == "2026-03-02T11:59:00+00:00"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_webhook_nan_body_says_malformed_json_once(client, hooked, constant):
    response = post(client, hooked.webhook_path, f'{{"t": {constant}}}'.encode())

    assert response.status_code == 400
    assert response.json() == {"error": f"malformed JSON: {constant} is not a JSON number"}


# --- defect 4: a reading that cannot be stored is rejected, not a duplicate ----------------------


def test_webhook_cbor_integer_over_4300_digits_is_rejected_with_its_reason(client, hooked):
    body = cbor2.dumps({"temp": 21.5, "count": 10**5000})

    response = post(client, hooked.webhook_path, body, content_type="application/cbor")

    assert response.status_code == 202
    answer = response.json()
    assert answer["stored"] == 0 and answer["duplicates"] == 0
    assert "4300 digits" in answer["rejected"]
    delivery = WebhookDelivery.objects.get()
    assert delivery.outcome == "rejected"
    assert "4300 digits" in delivery.error
    assert delivery.readings_duplicate == 0
    assert not hooked.readings.exists()


def test_webhook_unstorable_reading_can_be_reprocessed(client, hooked):
    body = cbor2.dumps({"count": 10**5000})
    post(client, hooked.webhook_path, body, content_type="application/cbor")

    result = reprocess_deliveries(WebhookDelivery.objects.all())

    assert result.skipped == 0
    assert result.counts == {"rejected": 1}
    assert WebhookDelivery.objects.get().attempts == 2


def test_webhook_same_reading_twice_is_still_a_duplicate(client, hooked):
    post(client, hooked.webhook_path, {"temp": 1})

    response = post(client, hooked.webhook_path, {"temp": 1})

    assert response.json() == {"stored": 0, "duplicates": 1}
    assert list(WebhookDelivery.objects.values_list("outcome", flat=True).order_by("pk")) == [
        "processed",
        "duplicate",
    ]
