"""The simulator's fleet and pipelines do what Golioth's docs say real fleets and pipelines do."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import cbor2
import pytest
import requests

from integrations.golioth.payloads import format_time, parse_time
from integrations.golioth.simulator.fleet import FleetModel
from integrations.golioth.simulator.pipelines import (
    CBOR,
    DEFAULT_CBOR_LOGS,
    JSON,
    Message,
    Router,
    pipelines_from_yaml,
)
from integrations.golioth.simulator.server import GoliothSimulator
from telemetry.keys import canonical_json

START = datetime(2026, 3, 2, tzinfo=UTC)
T_NS = 1_772_409_600_123_456_789  # 2026-03-02T00:00:00.123456789Z
SENSOR_PIPELINES = """
filter: {path: "/sensor", content_type: application/json}
steps:
  - {name: history, destination: {type: lightdb-stream, version: v1}}
---
filter: {path: "/sensor", content_type: application/cbor}
steps:
  - {name: decode, transformer: {type: cbor-to-json, version: v1}}
  - {name: history, destination: {type: lightdb-stream, version: v1}}
"""


def route(pipelines, *messages):
    stored = []
    router = Router(pipelines, project_id="p", stream=lambda m, v: stored.append((m, v)))
    for message in messages:
        router.route(message)
    return router, stored


def test_router_decodes_cbor_splits_batches_and_keeps_logs_out():
    pipelines = [*pipelines_from_yaml(SENSOR_PIPELINES), DEFAULT_CBOR_LOGS]
    batch = [{"ts": 1_772_400_000_000, "temp": 1}, {"ts": 1_772_400_060_000, "temp": 2}]
    router, stored = route(
        pipelines,
        Message("d", "/sensor", CBOR, cbor2.dumps({"temp": 3}), T_NS),
        Message("d", "/sensor", CBOR, cbor2.dumps(batch), T_NS),
        Message(
            "d", "/logs", CBOR, cbor2.dumps({"level": "info", "module": "app", "msg": "x"}), T_NS
        ),
        Message("d", "/other", JSON, b'{"temp": 4}', T_NS),
    )

    assert [(m.time_ns, v) for m, v in stored] == [
        (T_NS, {"temp": 3}),
        (1_772_400_000_000 * 10**6, {"temp": 1}),  # its own time, `ts` removed
        (1_772_400_060_000 * 10**6, {"temp": 2}),
    ]
    assert router.delivered["logs"] == 1


def test_router_stores_twice_what_two_pipelines_send_to_lightdb_stream():
    everything = {
        "filter": {"path": "*", "content_type": JSON},
        "steps": [{"name": "s", "destination": {"type": "lightdb-stream", "version": "v1"}}],
    }
    _, stored = route(
        [*pipelines_from_yaml(SENSOR_PIPELINES), everything],
        Message("d", "/sensor", JSON, b'{"temp": 1}', T_NS),
    )

    assert len(stored) == 2


def test_router_transformer_with_destination_leaves_later_steps_untransformed():
    pipeline = {
        "filter": {"path": "*", "content_type": JSON},
        "steps": [
            {
                "name": "push",
                "transformer": {"type": "inject-metadata", "version": "v1"},
                "destination": {"type": "webhook", "version": "v1"},
            },
            {
                "name": "nested",
                "transformer": {"type": "inject-path", "version": "v1"},
                "destination": {"type": "lightdb-stream", "version": "v1"},
            },
        ],
    }
    router, stored = route([pipeline], Message("d", "/env/air", JSON, b'{"t2": 1}', T_NS))

    assert [v for _, v in stored] == [{"env": {"air": {"t2": 1}}}]
    assert router.delivered["webhook"] == 1


def test_router_hands_webhook_deliveries_as_their_step_transformed_them():
    pipeline = {
        "filter": {"path": "/sensor", "content_type": JSON},
        "steps": [
            {"name": "history", "destination": {"type": "lightdb-stream", "version": "v1"}},
            {
                "name": "push",
                "transformer": {"type": "inject-metadata", "version": "v1"},
                "destination": {"type": "webhook", "version": "v1"},
            },
        ],
    }
    pushed = []
    router = Router(
        [pipeline], project_id="p", stream=lambda m, v: None, webhook=lambda m, v: pushed.append(v)
    )

    router.route(Message("d", "/sensor", JSON, b'{"temp": 1}', T_NS))

    assert pushed == [
        {
            "data": {"temp": 1},
            "device_id": "d",
            "project_id": "p",
            "timestamp": {"seconds": T_NS // 10**9, "nanos": T_NS % 10**9},
        }
    ]


@pytest.fixture
def fleet():
    with GoliothSimulator() as simulator:
        model = FleetModel(
            simulator, pipelines=pipelines_from_yaml(SENSOR_PIPELINES), start=START, devices=40
        )
        model.advance(START + timedelta(hours=6))
        yield model


def test_fleet_truth_is_what_the_simulator_stores_and_holds_no_logs(fleet):
    stored = sorted(
        (r.device_external_id, r.timestamp, canonical_json(r.payload))
        for r in fleet.simulator.readings()
    )

    assert stored == fleet.ground_truth()
    assert fleet.logs_sent > 100
    assert not any(b'"msg"' in payload for _, _, payload in fleet.ground_truth())
    assert {d.content_type for d in fleet.devices} == {JSON, CBOR}


def test_fleet_keeps_a_tenth_offline_and_uploads_back_dated_batches(fleet):
    assert len(fleet.offline) == 4
    assert len(fleet.uploads) > 10
    assert all(u.at - u.oldest >= timedelta(minutes=20) for u in fleet.uploads)
    uploaded = fleet.uploads[0]
    mine = [t for d, t, _ in fleet.ground_truth() if d == uploaded.device_id]
    assert uploaded.oldest in mine


def test_fleet_times_carry_nanoseconds_in_the_stream(fleet):
    simulator = fleet.simulator
    reply = requests.post(
        f"{simulator.base_url}/v1/projects/{simulator.project_id}/stream",
        headers={"x-api-key": simulator.api_key},
        json={
            "start": format_time(START),
            "end": format_time(START + timedelta(hours=6)),
            "query": {"fields": [{"path": "time"}, {"path": "deviceId"}, {"path": "*"}]},
            "perPage": 100,
        },
        timeout=5,
    ).json()

    # Live readings carry the arrival's nanoseconds; uploaded ones their `ts` milliseconds.
    nine_digits = [i for i in reply["list"] if re.fullmatch(r".*\.\d{9}Z", i["time"])]
    assert len(nine_digits) > 50
    keys = set(fleet.ground_truth())
    for item in reply["list"]:
        key = (item["deviceId"], parse_time(item["time"]), canonical_json(item["data"]))
        assert key in keys


def test_fleet_uploads_inside_a_run_after_a_stream_call(fleet):
    simulator = fleet.simulator
    before = len(fleet.truth)
    chosen = fleet.reconnect_during_run(2, after_stream_calls=2)
    body = json.dumps({"start": format_time(START), "end": format_time(fleet.now)})
    url = f"{simulator.base_url}/v1/projects/{simulator.project_id}/stream"
    headers = {"x-api-key": simulator.api_key}

    requests.post(url, data=body, headers=headers, timeout=5)
    assert len(fleet.truth) == before
    requests.post(url, data=body, headers=headers, timeout=5)

    assert len(chosen) == 2
    assert len(fleet.truth) > before
    assert {u.device_id for u in fleet.uploads[-2:]} == set(chosen)
