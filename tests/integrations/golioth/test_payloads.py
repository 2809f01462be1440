"""Golioth JSON -> typed records, on real-shaped bodies from tests/fixtures/golioth."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import cbor2
import pytest

from integrations.golioth.payloads import (
    PayloadError,
    format_time,
    nest_under_path,
    parse_device,
    parse_device_page,
    parse_stream_page,
    parse_time,
    timestamp_from_seconds,
)
from telemetry.keys import dedup_key

DEVICE = "686d5da09c3ca8d766c1672b"
READING_TIME = datetime(2025, 11, 14, 15, 27, 59, 512133, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-11-14T15:27:59.512133674Z", datetime(2025, 11, 14, 15, 27, 59, 512133, tzinfo=UTC)),
        ("2025-11-14T15:27:44.391Z", datetime(2025, 11, 14, 15, 27, 44, 391000, tzinfo=UTC)),
        ("2021-05-06T14:48:35.687416+00:00", datetime(2021, 5, 6, 14, 48, 35, 687416, tzinfo=UTC)),
        ("2025-11-14T16:27:00+01:00", datetime(2025, 11, 14, 15, 27, tzinfo=UTC)),
        ("2025-11-14T15:20:01.5Z", datetime(2025, 11, 14, 15, 20, 1, 500000, tzinfo=UTC)),
        ("2025-11-14T15:20:01", datetime(2025, 11, 14, 15, 20, 1, tzinfo=UTC)),
    ],
)
def test_parse_time_golioth_styles(text, expected):
    parsed = parse_time(text)

    assert parsed == expected and parsed.tzinfo is UTC


@pytest.mark.parametrize("text", ["", "yesterday", "2025-11-14T15:27:59.5121336741Z", 1700000000])
def test_parse_time_refuses_garbage(text):
    with pytest.raises(PayloadError):
        parse_time(text)


def test_format_time_is_the_stream_query_form():
    assert format_time(READING_TIME) == "2025-11-14T15:27:59.512133Z"
    assert parse_time(format_time(READING_TIME)) == READING_TIME


def test_parse_device_page_real_capture(golioth_fixture):
    connected, never, disabled = parse_device_page(golioth_fixture("devices_page.json"))

    assert (connected.external_id, connected.name, connected.cohort_id) == (
        DEVICE,
        "C252400001",
        "nrf9151-cell-gateways",
    )
    assert connected.last_report == datetime(2025, 11, 15, 3, 5, 8, 36000, tzinfo=UTC)
    assert connected.firmware_version == "1.2.5"
    assert (connected.firmware["main"].state_code, connected.firmware["main"].reason_code) == (0, 0)
    assert connected.firmware["main"].time == datetime(2025, 7, 9, 16, 47, 7, 441859, tzinfo=UTC)
    assert connected.hardware_ids == ["20250708180416-c252400001"] and connected.blueprint_id == ""
    assert (disabled.enabled, disabled.blueprint_id, len(disabled.tag_ids)) == (
        False,
        "68909f0e1d2c3b4a59687766",
        2,
    )
    assert disabled.firmware["main"].state_code == 1 and disabled.firmware["modem"].reason_code == 1
    assert never.name == "C252400042"


def test_parse_device_never_connected(golioth_fixture):
    never = parse_device(golioth_fixture("devices_page.json")["list"][1])

    assert (never.last_report, never.firmware, never.firmware_version) == (None, {}, "")
    assert never.created_at == datetime(2025, 11, 10, 9, 0, 0, 123000, tzinfo=UTC)


def test_parse_device_falls_back_to_last_seen_online(golioth_fixture):
    raw = golioth_fixture("devices_page.json")["list"][0]
    raw["lastReport"] = raw["metadata"]["lastReport"] = None

    assert parse_device(raw).last_report == datetime(2025, 11, 14, 15, 27, 44, 391000, tzinfo=UTC)


def test_parse_stream_page_time_styles_oldest_first(golioth_fixture):
    readings = parse_stream_page(golioth_fixture("stream_page.json"))

    assert [r.timestamp for r in readings] == [
        datetime(2025, 11, 14, 15, 27, 0, tzinfo=UTC),
        datetime(2025, 11, 14, 15, 27, 30, 687416, tzinfo=UTC),
        datetime(2025, 11, 14, 15, 27, 44, 391000, tzinfo=UTC),
        READING_TIME,
    ]
    assert readings[-1].device_external_id == DEVICE and readings[-1].payload == {
        "temp": 21.5,
        "hum": 40,
    }
    assert readings[1].payload == {"sensor": {"temp": 19.0, "batt": {"mv": 3712}}}


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"data": {"list": []}},
        {"list": {"time": "x"}},
        {"list": [{"deviceId": DEVICE, "data": {}}]},
        {"list": [{"time": "2025-11-14T15:27:44.391Z", "data": {}}]},
        {"list": [{"time": "not a time", "deviceId": DEVICE}]},
    ],
)
def test_parse_stream_page_refuses_wrong_shapes(body):
    with pytest.raises(PayloadError):
        parse_stream_page(body)


def test_parse_stream_page_tolerates_omitted_empty_list():
    # gRPC-gateway leaves out empty repeated fields and zero numbers.
    assert (
        parse_stream_page({}) == parse_stream_page({"page": 3, "perPage": 100, "total": 250}) == []
    )


def test_webhook_envelopes_carry_the_stream_time(golioth_fixture):
    for name in ("webhook_inject_metadata.json", "webhook_legacy.json"):
        body = golioth_fixture(name)
        timestamp = body["timestamp"]

        assert timestamp_from_seconds(timestamp["seconds"], timestamp["nanos"]) == READING_TIME
        assert body["device_id"] == DEVICE and body["data"] == {"temp": 21.5, "hum": 40}


def test_webhook_headers_name_device_and_project_except_legacy(golioth_fixture):
    headers = golioth_fixture("webhook_headers.json")

    assert parse_time(headers["plain"]["Ce-Time"]) == READING_TIME
    assert (
        headers["plain"]["Ce-Source"] == DEVICE and headers["plain"]["Ce-Subject"] == "nrf-gateways"
    )
    assert (headers["legacy"]["Ce-Source"], headers["legacy"]["Ce-Subject"]) == (
        "golioth/app/gateway/coap",
        "stream",
    )


def test_webhook_cbor_body_is_the_json_payload(golioth_fixture):
    assert cbor2.loads(golioth_fixture("webhook_plain.cbor")) == golioth_fixture(
        "webhook_plain.json"
    )


def test_dedup_key_same_for_webhook_and_pulled_reading(golioth_fixture):
    pulled = parse_stream_page(golioth_fixture("stream_page.json"))[-1]
    envelope = golioth_fixture("webhook_inject_metadata.json")
    pushed_time = timestamp_from_seconds(**envelope["timestamp"])
    # Key order differs on the wire; the canonical JSON does not.
    pushed_payload = json.loads('{"hum": 40, "temp": 21.5}')

    def key(timestamp, payload):
        return dedup_key(
            integration_id=1, device_external_id=DEVICE, timestamp=timestamp, payload=payload
        )

    assert key(pulled.timestamp, pulled.payload) == key(pushed_time, pushed_payload)
    assert key(pulled.timestamp, pulled.payload) != key(pushed_time, {"hum": 40, "temp": 21.6})
    assert key(pulled.timestamp, pulled.payload) != key(
        READING_TIME.replace(microsecond=512134), pushed_payload
    )


def test_legacy_pipeline_nests_the_payload_under_its_path(golioth_fixture):
    pulled = parse_stream_page(golioth_fixture("stream_page.json"))[1]

    assert nest_under_path("/sensor", {"temp": 19.0, "batt": {"mv": 3712}}) == pulled.payload
    assert nest_under_path("a/b", 1) == {"a": {"b": 1}} and nest_under_path("", 1) == 1


@pytest.mark.parametrize(
    "seconds, nanos",
    [(True, 0), (False, 0), (1_700_000_000, -1), (1_700_000_000, 1_000_000_000), (1.5, 0),
     ("17e8", 0), (1_700_000_000, True), (10**5000, 0), ("9" * 5000, 0)],
    ids=["true", "false", "nanos -1", "nanos 1e9", "fraction", "text", "nanos true", "huge",
         "huge text"],
)  # fmt: skip
def test_impossible_timestamp_objects_are_refused_with_a_short_reason(seconds, nanos):
    """`seconds` is an integer, `nanos` 0..999,999,999 (protobuf's Timestamp, which the
    inject-metadata transformer sends); a bool is no integer, and the reason stays short
    whatever was sent."""
    with pytest.raises(PayloadError) as refused:
        timestamp_from_seconds(seconds, nanos)

    assert "timestamp" in str(refused.value) and len(str(refused.value)) <= 200


def test_timestamp_seconds_as_int64_text_is_read():
    """Protobuf's JSON mapping writes int64 as a string: `"seconds": "1700000000"` is the same
    time [guess: no capture shows which the transformer sends]."""
    assert timestamp_from_seconds("1700000000", 5_000) == timestamp_from_seconds(
        1_700_000_000, 5_000
    )
