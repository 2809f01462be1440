"""Hostile and broken webhook bodies: never a 5xx, every authenticated request kept."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime

import cbor2
import pytest

from integrations.models import DeviceIntegration, WebhookDelivery

SECRET = "whsec-fuzz-0123456789"
DEVICE = "686d5da09c3ca8d766c1672b"
VALID = {
    "data": {"temp": 21.5, "tags": ["a", "b"], "nested": {"x": [1, 2, {"y": None}]}},
    "device_id": DEVICE,
    "project_id": "sim-project",
    "timestamp": {"seconds": 1772366400, "nanos": 123456000},
}
HEADERS = {
    "Ce-Source": DEVICE,
    "Ce-Subject": "sim-project",
    "Ce-Type": "io.golioth.data.v1/.s/sensor",
    "Ce-Time": "2026-03-01T12:00:00.123456Z",
}


@pytest.fixture
def hooked(make_integration) -> DeviceIntegration:
    integration = make_integration("fuzzed", webhook_enabled=True)
    integration.add_webhook_secret(SECRET)
    integration.save()
    return integration


def crafted() -> Iterator[tuple[bytes, str, dict[str, str]]]:
    json_ct, cbor_ct = "application/json", "application/cbor"
    valid_json, valid_cbor = json.dumps(VALID).encode(), cbor2.dumps(VALID)
    yield b"", json_ct, HEADERS
    yield b"   ", json_ct, HEADERS
    yield b"[" * 10_000 + b"]" * 10_000, json_ct, HEADERS
    yield b'{"a":' * 5_000 + b"1" + b"}" * 5_000, json_ct, HEADERS
    yield b"\x81" * 10_000 + b"\x01", cbor_ct, HEADERS
    yield b'{"t": 1e400}', json_ct, HEADERS
    yield b'{"t": ' + b"9" * 5_000 + b"}", json_ct, HEADERS
    yield b'{"t": "\\u0000"}', json_ct, HEADERS
    yield b'{"t\\u0000": 1}', json_ct, HEADERS
    yield b'{"t": "\\ud800"}', json_ct, HEADERS
    yield b'{"t": "\xed\xa0\x80"}', json_ct, HEADERS
    yield b'{"t": "\xc0\xaf"}', json_ct, HEADERS
    yield '{"t": "ü"}'.encode("utf-16"), json_ct, HEADERS
    yield cbor2.dumps({"t": "\x00"}), cbor_ct, HEADERS
    yield cbor2.dumps({"t": float("inf")}), cbor_ct, HEADERS
    yield cbor2.dumps({b"key": 1}), cbor_ct, HEADERS
    yield cbor2.dumps(cbor2.CBORTag(9999, "x")), cbor_ct, HEADERS
    yield cbor2.dumps({"t": cbor2.undefined}), cbor_ct, HEADERS
    yield valid_cbor, json_ct, HEADERS
    yield valid_json, cbor_ct, HEADERS
    yield valid_json, "application/octet-stream", HEADERS
    yield valid_json, "multipart/form-data; boundary=x", HEADERS
    yield b'{"temp": 1}', json_ct, {}
    yield b'{"temp": 1}', json_ct, {"Ce-Source": "a\tb"}
    yield b'{"temp": 1}', json_ct, {**HEADERS, "Ce-Time": "not a time"}
    yield b'{"temp": 1}', json_ct, {**HEADERS, "Ce-Time": "9999-12-31T23:59:59.999999-23:59"}
    yield b'{"temp": 1}', json_ct, {**HEADERS, "Ce-Type": "DEVICE_STREAM_TYPE"}
    for seconds in (10**20, -(10**20), "soon", None, [], 1.5e300, True):
        body = {**VALID, "timestamp": {"seconds": seconds, "nanos": 10**15}}
        yield json.dumps(body).encode(), json_ct, HEADERS
    for bad in ({}, [], 7, "x" * 1000, "\x00", None):
        yield json.dumps({**VALID, "device_id": bad}).encode(), json_ct, {}
    for data in (None, [], 3, "text", True):
        yield json.dumps({**VALID, "data": data}).encode(), json_ct, HEADERS


def mutated(rng: random.Random, count: int) -> Iterator[tuple[bytes, str, dict[str, str]]]:
    sources = [
        (json.dumps(VALID).encode(), "application/json"),
        (json.dumps(VALID["data"]).encode(), "application/json"),
        (cbor2.dumps(VALID), "application/cbor"),
    ]
    for _ in range(count):
        body, content_type = rng.choice(sources)
        body = bytearray(body)
        action = rng.randrange(4)
        if action == 0:
            body = body[: rng.randrange(len(body))]
        elif action == 1:
            for _ in range(rng.randint(1, 4)):
                body[rng.randrange(len(body))] = rng.randrange(256)
        elif action == 2:
            body[rng.randrange(len(body)) :] = rng.randbytes(rng.randint(1, 40))
        else:
            body = bytearray(rng.randbytes(rng.randint(1, 300)))
        yield bytes(body), content_type, HEADERS


def test_fuzzed_webhooks_never_5xx_and_all_kept(client, hooked):
    cases = [*crafted(), *mutated(random.Random(20260301), 300)]
    statuses = []
    for body, content_type, headers in cases:
        response = client.generic(
            "POST", hooked.webhook_path, body, content_type=content_type,
            headers={**headers, "Authorization": SECRET},
        )  # fmt: skip
        statuses.append(response.status_code)
        assert response.status_code < 500, (body[:80], content_type, response.content[:200])
        if response.status_code >= 400:
            assert response.json()["error"], body[:80]
            assert "\n" not in response.json()["error"]

    assert WebhookDelivery.objects.count() == len(cases)
    assert not WebhookDelivery.objects.filter(outcome="received").exists()
    failed = WebhookDelivery.objects.filter(outcome="failed")
    assert failed.count() == sum(1 for s in statuses if s >= 400)
    assert all(d.error and not d.traceback for d in failed)


def test_fuzzed_webhooks_without_secret_keep_nothing(client, hooked):
    for body, content_type, headers in list(crafted())[:10]:
        response = client.generic(
            "POST", hooked.webhook_path, body, content_type=content_type, headers=headers
        )
        assert response.status_code == 401
    assert not WebhookDelivery.objects.exists()
    hooked.refresh_from_db()
    assert hooked.webhook_rejected_count == 10


def test_fuzzed_valid_reading_still_stored_after_the_noise(client, hooked):
    for body, content_type, headers in crafted():
        client.generic(
            "POST", hooked.webhook_path, body, content_type=content_type,
            headers={**headers, "Authorization": SECRET},
        )  # fmt: skip

    response = client.generic(
        "POST", hooked.webhook_path, json.dumps(VALID), content_type="application/json",
        headers={**HEADERS, "Authorization": SECRET},
    )  # fmt: skip

    assert response.json() == {"stored": 1, "duplicates": 0}
    row = hooked.readings.get(device_timestamp=datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC))
    assert row.telemetry == VALID["data"]
