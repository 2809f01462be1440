from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import cbor2
import pytest

from integrations.golioth.payloads import PayloadError
from integrations.golioth.webhook_payloads import (
    MAX_DEPTH,
    UnsupportedMediaType,
    parse_webhook,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "golioth" / "webhooks"
RECEIVED = datetime(2026, 3, 1, 12, 0, 0, 500000, tzinfo=UTC)
DEVICE = "686d5da09c3ca8d766c1672b"


def fixture(name: str) -> tuple[dict[str, str], bytes]:
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    return data["headers"], json.dumps(data["body"]).encode()


def parse(body: bytes, headers: dict[str, str], **kwargs):
    return parse_webhook(
        body,
        content_type=headers.get("Content-Type", ""),
        headers=headers,
        received_at=RECEIVED,
        **kwargs,
    )


def test_parse_webhook_plain_takes_device_path_and_time_from_headers():
    headers, body = fixture("plain")

    message = parse(body, headers)

    assert message.shape == "plain"
    reading = message.reading
    assert reading.device_external_id == DEVICE
    assert reading.path == "sensor"
    assert reading.timestamp == datetime(2025, 11, 14, 15, 27, 59, 512133, tzinfo=UTC)
    assert reading.time_exact is True
    assert reading.payload == {"temp": 21.5, "hum": 40}
    assert reading.project_id == "sim-project"


def test_parse_webhook_inject_metadata_prefers_the_body_timestamp():
    headers, body = fixture("inject_metadata")

    message = parse(body, headers)

    assert message.shape == "inject-metadata"
    assert message.reading.timestamp == datetime(2022, 3, 18, 17, 25, 8, 346519, tzinfo=UTC)
    assert message.reading.path == "env/weather"
    assert message.reading.payload == {"temp": 21.5, "hum": 40}


def test_parse_webhook_legacy_stream_reads_device_from_body_not_headers():
    headers, body = fixture("legacy_stream")

    message = parse(body, headers)

    assert message.shape == "legacy"
    assert message.reading.device_external_id == DEVICE
    assert message.reading.project_id == "sim-project"
    assert message.reading.timestamp == datetime(2021, 5, 6, 14, 48, 35, 687416, tzinfo=UTC)
    assert message.reading.payload == {"sensor": {"temp": 21.5, "hum": 40}}


def test_parse_webhook_legacy_other_types_are_ignored_not_errors():
    headers, body = fixture("legacy_firmware")

    message = parse(body, headers)

    assert message.reading is None
    assert "DEVICE_FIRMWARE_LOG_ENTRY_TYPE" in message.ignored


def test_parse_webhook_without_any_time_uses_receive_time_as_approximate():
    headers, body = fixture("plain")
    del headers["Ce-Time"]

    reading = parse(body, headers).reading

    assert reading.timestamp == RECEIVED
    assert reading.time_exact is False


def test_parse_webhook_cbor_and_json_give_the_same_reading():
    headers, body = fixture("inject_metadata")
    cbor_headers = {**headers, "Content-Type": "application/cbor"}

    from_json = parse(body, headers).reading
    from_cbor = parse(cbor2.dumps(json.loads(body)), cbor_headers).reading

    assert from_cbor == from_json


def test_parse_webhook_cbor_bytes_and_int_keys_get_a_json_form():
    headers = {"Ce-Source": DEVICE, "Ce-Type": "io.golioth.data.v1/.s/raw"}
    body = cbor2.dumps({"blob": b"\x00\x01", 7: 1.5})

    reading = parse(body, {**headers, "Content-Type": "application/cbor"}).reading

    assert reading.payload == {"blob": "AAE=", "7": 1.5}


def test_parse_webhook_nests_payload_under_path_when_asked():
    headers, body = fixture("plain")

    reading = parse(body, headers, nest_payload=True).reading

    assert reading.payload == {"sensor": {"temp": 21.5, "hum": 40}}


def test_parse_webhook_nesting_lets_a_scalar_reading_through():
    headers = {"Ce-Source": DEVICE, "Ce-Type": "io.golioth.data.v1/.s/temp"}

    reading = parse(b"21.5", headers, nest_payload=True).reading

    assert reading.payload == {"temp": 21.5}


def test_parse_webhook_device_from_body_device_id_without_ce_source():
    reading = parse(b'{"data": {"a": 1}, "device_id": "abc"}', {}).reading

    assert reading.device_external_id == "abc"
    assert reading.path == ""


@pytest.mark.parametrize(
    ("body", "content_type", "headers", "message"),
    [
        (b"", "application/json", {}, "empty body"),
        (b'{"temp": ', "application/json", {}, "malformed JSON"),
        (b"\xff\xfe{}", "application/json", {}, "not valid UTF-8"),
        (b"[1, 2]", "application/json", {}, "JSON list, not an object"),
        (b"42", "application/json", {}, "JSON number, not an object"),
        (b'"hi"', "application/json", {}, "JSON string, not an object"),
        (b'{"t": NaN}', "application/json", {}, "NaN is not a JSON number"),
        (b'{"t": 1e400}', "application/json", {}, "too large to store"),
        (b'{"t": ' + b"9" * 5000 + b"}", "application/json", {}, "malformed JSON"),
        (b'{"t": "a\\u0000b"}', "application/json", {}, "NUL character"),
        (b'{"t\\u0000": 1}', "application/json", {}, "NUL character"),
        (b'{"t": "\\ud800"}', "application/json", {}, "lone surrogate"),
        (cbor2.dumps({"t": "\x00"}), "application/cbor", {}, "NUL character"),
        (b"[" * 10_000 + b"]" * 10_000, "application/json", {}, "nested deeper"),
        (b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), "", {}, "nested deeper"),
        (b"\x81" * 10_000, "application/cbor", {}, "nested deeper"),
        (b"\xa1\x61", "application/cbor", {}, "malformed CBOR"),
        (cbor2.dumps({"a": 1}) + b"xx", "application/cbor", {}, "2 bytes after"),
        (cbor2.dumps({"a": float("nan")}), "application/cbor", {}, "NaN"),
        # A tag with no JSON form is named (found by mypy: the hook took cbor2 5's arguments).
        (cbor2.dumps({"a": cbor2.CBORTag(9999, 1)}), "application/cbor", {}, "tag 9999 has no"),
        (b'{"temp": 1}', "application/json", {"Ce-Source": ""}, "no device"),
        (b'{"temp": 1}', "application/json", {"Ce-Source": "x" * 65}, "longer than 64"),
        (
            b'{"data": {}, "device_id": "d", "timestamp": [1]}',
            "application/json",
            {},
            "unreadable timestamp",
        ),
        (
            b'{"data": {}, "device_id": "d", "timestamp": "yesterday"}',
            "application/json",
            {},
            "unreadable time",
        ),
        (
            b'{"data": {}, "device_id": "d", "timestamp": {"seconds": "x"}}',
            "application/json",
            {},
            "unreadable timestamp",
        ),
        (
            b'{"temp": 1}',
            "application/json",
            {"Ce-Source": "d", "Ce-Time": "2026-13-45T99:00:00Z"},
            "unreadable time",
        ),
        (b'{"data": {}, "device_id": 7}', "application/json", {}, "device_id must be text"),
        (b'{"x": 1}', "application/json", {"Ce-Type": "DEVICE_STREAM_TYPE"}, "envelope"),
    ],
)
def test_parse_webhook_refuses_bad_bodies_with_one_line(body, content_type, headers, message):
    with pytest.raises(PayloadError) as raised:
        parse_webhook(body, content_type=content_type, headers=headers, received_at=RECEIVED)

    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_parse_webhook_unsupported_content_type(content_type):
    with pytest.raises(UnsupportedMediaType, match="application/json or application/cbor"):
        parse_webhook(
            b'{"a": 1}', content_type=content_type, headers={"Ce-Source": "d"}, received_at=RECEIVED
        )


def test_parse_webhook_json_content_type_with_charset_and_no_content_type():
    headers = {"Ce-Source": "d"}
    for content_type in ("application/json; charset=utf-8", ""):
        message = parse_webhook(
            b'{"a": 1}', content_type=content_type, headers=headers, received_at=RECEIVED
        )
        assert message.reading.payload == {"a": 1}
