"""Hostile and broken webhook bodies: never a 5xx, every authenticated request kept.

Hand-made cases and byte mutations first, then Hypothesis: at least WEBHOOK_FUZZ_CASES generated
requests over every shape (plain, inject-metadata, legacy), both content types (JSON and CBOR with
tags, shared and string references), huge and deep values, bad UTF-8, lying lengths and hostile
CloudEvents headers, with and without the secret.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime

import cbor2
import pytest
from hypothesis import HealthCheck, given, seed
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

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


# --- Hypothesis ----------------------------------------------------------------------------------

WEBHOOK_FUZZ_CASES = 3000
TAGS = [0, 1, 2, 3, 4, 5, 24, 25, 28, 29, 30, 35, 36, 37, 52, 256, 258, 260, 1004, 55799, 9999]
LEGACY_TYPES = ["DEVICE_STREAM_TYPE", "UPDATE_DEVICE_STATE_TYPE", "TEST_EVENT_TYPE"]

readable = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=20),
)
hostile = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["\x00", "\ud800", "\u202e", "x" * 300]),
)
# Mostly readable values, so that stored readings are fuzzed as much as refused ones.
scalars = st.one_of(readable, readable, readable, hostile)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
golioth_times = st.datetimes(timezones=st.just(UTC)).map(
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
)
times = st.one_of(
    golioth_times,
    golioth_times,
    st.builds(
        "2026-03-01T12:00:00{}{:02d}:{:02d}".format,
        st.sampled_from("+-"),
        st.integers(0, 99),
        st.integers(0, 99),
    ),
    st.text(max_size=30),
)
timestamps = st.one_of(
    st.none(),
    times,
    st.fixed_dictionaries({"seconds": st.integers(-(2**64), 2**64), "nanos": st.integers()}),
    values,
)


@st.composite
def documents(draw) -> object:
    """A plain payload, an inject-metadata envelope, or anything at all."""
    data = draw(values)
    kind = draw(st.sampled_from(["plain", "envelope", "any"]))
    if kind == "plain":
        return {"reading": data} if not isinstance(data, dict) else data
    if kind == "envelope":
        envelope = {
            "data": draw(st.one_of(st.just({"temp": 1}), values)),
            "device_id": draw(st.one_of(st.just(DEVICE), st.text(max_size=80), values)),
            "timestamp": draw(timestamps),
        }
        if draw(st.booleans()):
            envelope["project_id"] = draw(st.sampled_from(["sim-project", "other", ""]))
        return envelope
    return data


def cbor(document: object, **options: bool) -> bytes:
    try:
        return cbor2.dumps(document, **options)
    except (cbor2.CBOREncodeError, UnicodeEncodeError, TypeError, ValueError):
        # cbor2 cannot write it (a lone surrogate, a tag it checks): a body with one of each.
        return b"\xa1\x61t\x62\xed\xa0"


def deep(depth: int, *, cbor: bool) -> bytes:
    if cbor:
        return b"\xa1\x61a" + b"\x81" * depth + b"\x01"
    return b'{"a":' + b"[" * depth + b"1" + b"]" * depth + b"}"


def bomb(levels: int, width: int) -> bytes:
    nested: list = ["x"]
    for _ in range(levels):
        nested = [nested] * width
    return cbor2.dumps({"b": nested}, value_sharing=True)


@st.composite
def bodies(draw) -> tuple[bytes, str]:
    shape = draw(
        st.sampled_from(
            ["json", "json", "cbor", "cbor", "tagged", "shared", "huge", "deep", "utf8", "bytes"]
        )
    )
    json_ct = draw(st.sampled_from(["application/json", "application/json; charset=utf-8", ""]))
    if shape == "json":
        text = json.dumps(draw(documents()), ensure_ascii=draw(st.booleans()))
        # A lone surrogate goes out as the bytes a careless encoder writes (invalid UTF-8).
        return text.encode("utf-8", "surrogatepass"), json_ct
    if shape == "cbor":
        return cbor(draw(documents())), "application/cbor"
    if shape == "tagged":
        tag = cbor2.CBORTag(draw(st.sampled_from(TAGS)), draw(values))
        document = {"t": tag} if draw(st.booleans()) else tag
        return cbor(document, string_referencing=draw(st.booleans())), "application/cbor"
    if shape == "shared":
        return bomb(draw(st.integers(1, 40)), draw(st.integers(1, 4))), "application/cbor"
    if shape == "huge":
        size = draw(st.sampled_from([60_000, 70_000, 200_000, 262_000, 300_000]))
        filler = draw(st.sampled_from(["x", "\x01", "é"]))
        document = {"t": filler * (size // len(filler.encode()))}
        if draw(st.booleans()):
            return cbor2.dumps(document), "application/cbor"
        return json.dumps(document, ensure_ascii=False).encode(), json_ct
    if shape == "deep":
        binary = draw(st.booleans())
        depth = draw(st.sampled_from([10, 63, 64, 65, 100, 5000]))
        return deep(depth, cbor=binary), "application/cbor" if binary else json_ct
    if shape == "utf8":
        text = bytearray(json.dumps(draw(documents())).encode("utf-8", "surrogatepass"))
        for _ in range(draw(st.integers(1, 3))):
            text.insert(
                draw(st.integers(0, len(text))), draw(st.sampled_from([0x80, 0xC0, 0xFF, 0xED]))
            )
        return bytes(text), json_ct
    content_type = draw(st.sampled_from(["application/cbor", json_ct, "text/plain", "x/y"]))
    return draw(st.binary(max_size=400)), content_type


@st.composite
def requests_(draw) -> dict:
    body, content_type = draw(bodies())
    headers = {}
    if draw(st.sampled_from([True] * 4 + [False])):
        headers["Ce-Source"] = draw(st.one_of(st.just(DEVICE), st.text(max_size=70)))
    if draw(st.booleans()):
        headers["Ce-Time"] = draw(times)
    if draw(st.booleans()):
        path = draw(st.one_of(st.just("sensor"), st.text(max_size=30)))
        headers["Ce-Type"] = draw(
            st.sampled_from([f"io.golioth.data.v1/.s/{path}", *LEGACY_TYPES, path])
        )
    if draw(st.booleans()):
        headers["Ce-Subject"] = draw(st.sampled_from(["sim-project", "another-project"]))
    extra = {}
    lie = draw(st.sampled_from(["none"] * 6 + ["short", "long", "garbage", "chunked"]))
    if lie == "short":
        extra["CONTENT_LENGTH"] = str(max(0, len(body) - draw(st.integers(1, 50))))
    elif lie == "long":
        extra["CONTENT_LENGTH"] = str(len(body) + draw(st.integers(1, 10**6)))
    elif lie == "garbage":
        extra["CONTENT_LENGTH"] = draw(st.sampled_from(["-1", "abc", "1e3", "", " 12"]))
    elif lie == "chunked":
        extra.update({"CONTENT_LENGTH": "", "wsgi.input_terminated": True})
    authenticated = draw(st.sampled_from([True] * 9 + [False]))
    return {
        "body": body,
        "content_type": content_type,
        "headers": headers,
        "extra": extra,
        "authenticated": authenticated,
    }


def test_webhook_hypothesis_fuzz_never_5xx_keeps_every_delivery_with_a_reason(
    client, hooked, settings, record_property
):
    settings.GSYNC_WEBHOOK_AUTH_FAILURES = 10**9  # unauthenticated cases stay 401, not 429
    seen = {"cases": 0, "authenticated": 0, "refused": 0}

    @seed(20260301)
    @hypothesis_settings(
        max_examples=WEBHOOK_FUZZ_CASES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=requests_())
    def send(case: dict) -> None:
        seen["cases"] += 1
        before = WebhookDelivery.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        headers = dict(case["headers"])
        if case["authenticated"]:
            headers["Authorization"] = SECRET
        response = client.generic(
            "POST", hooked.webhook_path, case["body"], content_type=case["content_type"],
            headers=headers, **case["extra"],
        )  # fmt: skip
        status = response.status_code
        assert status < 500, (case, response.content[:300])
        answer = response.json()
        kept = list(WebhookDelivery.objects.filter(pk__gt=before))
        if not case["authenticated"]:
            assert status == 401 and not kept, (case, status)
            return
        seen["authenticated"] += 1
        assert len(kept) == 1, case
        delivery = kept[0]
        assert delivery.outcome != "received" and not delivery.traceback, (case, delivery.error)
        if status >= 300 or delivery.outcome in ("failed", "rejected"):
            seen["refused"] += 1
            reason = answer.get("error") or answer.get("rejected")
            assert reason and "\n" not in reason, (case, answer)
            assert delivery.error, case

    send()

    record_property("webhook_fuzz_cases", seen["cases"])
    print(f"webhook fuzz: {seen}")
    assert seen["cases"] >= WEBHOOK_FUZZ_CASES
    assert seen["authenticated"] > WEBHOOK_FUZZ_CASES // 2
    assert 0 < seen["refused"] < seen["authenticated"]
