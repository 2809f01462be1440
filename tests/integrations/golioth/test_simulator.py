"""The simulator speaks Golioth's API as golioth-api.md describes it, faults and webhooks too."""

from __future__ import annotations

import http.client
import io
import json
import re
import threading
import time
from datetime import timedelta

import cbor2
import pytest
import requests
from django.core.management import call_command

from integrations.golioth.payloads import format_time, parse_device, parse_time
from integrations.golioth.simulator.faults import FaultConfig
from integrations.golioth.simulator.server import GoliothSimulator


@pytest.fixture
def api(sim):
    """Calls one of the project's endpoints with the right key."""
    session = requests.Session()
    session.headers["x-api-key"] = sim.api_key

    def call(method: str, path: str, **kwargs) -> requests.Response:
        url = f"{sim.base_url}/v1/projects/{sim.project_id}{path}"
        return session.request(method, url, **{"timeout": 5, **kwargs})

    yield call
    session.close()


def stream_body(window, **extra):
    return {"start": format_time(window[0]), "end": format_time(window[1]), **extra}


def test_device_json_has_the_keys_of_the_real_capture(sim, api, golioth_fixture):
    captured = golioth_fixture("devices_page.json")["list"]
    sim.add_device(name="C1", cohort_id="c", firmware_version="1.2.5", hardware_ids=["hw"])
    sim.add_device(name="never")

    connected, never = api("GET", "/devices").json()["list"]

    assert connected.keys() == captured[0].keys()
    assert connected["metadata"].keys() == captured[0]["metadata"].keys()
    assert (
        connected["metadata"]["update"]["main"].keys()
        == captured[0]["metadata"]["update"]["main"].keys()
    )
    assert never.keys() == captured[1].keys() and never["metadata"] == captured[1]["metadata"]
    assert (connected["status"], connected["metadata"]["update"]["main"]["stateCode"]) == ("-", "0")
    assert parse_device(connected).firmware_version == "1.2.5"


def test_devices_pages_are_zero_based(sim, api, window):
    sim.seed_fleet(25, 0, start=window[0], end=window[1])

    first = api("GET", "/devices", params={"page": 0, "perPage": 100}).json()
    second = api("GET", "/devices", params={"page": 1, "perPage": 100}).json()

    assert (len(first["list"]), first["total"]) == (25, 25)
    assert (second["list"], second["total"], second["page"]) == ([], 25, 1)
    assert api("GET", "/devices", params={"perPage": 101}).status_code == 400


def test_devices_filters(sim, api):
    sim.add_device(
        id="a" * 24, name="alpha", hardware_ids=["hw-1"], tag_ids=["t1", "t2"], enabled=False
    )
    sim.add_device(id="b" * 24, name="beta", hardware_ids=["hw-2"], tag_ids=["t1"], cohort_id="c1")

    def ids(**params):
        return [d["id"] for d in api("GET", "/devices", params=params).json()["list"]]

    assert ids(tags=["t1", "t2"]) == ["a" * 24]  # a device must carry every tag
    assert ids(tags=["t1"]) == ["a" * 24, "b" * 24]
    assert ids(deviceName="beta") == ids(hardwareId="hw-2") == ids(cohortId="c1") == ["b" * 24]
    assert ids(enabled="false") == ids(term="ALP") == ["a" * 24]


def test_stream_newest_first_with_golioth_time_styles(sim, api, window):
    fleet = sim.seed_fleet(8, 40, start=window[0], end=window[1], never_connected=0)
    stored = {(r.device_external_id, r.timestamp): r.payload for r in sim.readings()}

    body = api("POST", "/stream", json=stream_body(window, page=0, perPage=100)).json()

    times = [parse_time(item["time"]) for item in body["list"]]
    assert times == sorted(times, reverse=True) and len(fleet) == 8 and body["total"] == 8 * 40
    for item, when in zip(body["list"], times, strict=True):
        assert stored[(item["deviceId"], when)] == item["data"]
    styles = {"ns": r"\.\d{9}Z$", "us": r"\.\d{6}Z$", "ms": r"\.\d{3}Z$", "offset": r"\+00:00$"}
    seen = {
        name for name, rx in styles.items() for item in body["list"] if re.search(rx, item["time"])
    }
    assert seen == set(styles)


def test_stream_get_with_query_string_equals_post(sim, api, window):
    fleet = sim.seed_fleet(6, 10, start=window[0], end=window[1], never_connected=0)
    params = stream_body(window, page=1, perPage=7)

    posted = api("POST", "/stream", json={**params, "deviceId": [fleet[0].id, fleet[1].id]}).json()
    got = api("GET", "/stream", params={**params, "deviceId": [fleet[0].id, fleet[1].id]}).json()

    assert posted == got and len(posted["list"]) == 7 and posted["total"] == 20


def test_stream_per_page_over_100_is_a_grpc_400(api, window):
    response = api("POST", "/stream", json=stream_body(window, perPage=101))

    assert response.status_code == 400
    assert response.json() == {
        "code": 3,
        "message": "perPage must be between 1 and 100",
        "details": [],
    }


def test_stream_device_endpoint_and_state(sim, api, window):
    device = sim.add_device(name="solo")
    other = sim.add_device(name="other")
    sim.add_reading(device.id, window[0], {"sensor": {"temp": 1}})
    sim.add_reading(other.id, window[0], {"sensor": {"temp": 9}})
    sim.add_reading(device.id, window[0] + timedelta(seconds=1), {"sensor": {"temp": 2}})

    page = api("POST", f"/devices/{device.id}/stream", json=stream_body(window)).json()
    state = api("GET", f"/devices/{device.id}/data/sensor/temp").json()

    assert [item["data"]["sensor"]["temp"] for item in page["list"]] == [2, 1]
    assert state == {"data": 2}
    assert sim.call_counts == {"device_stream": 1, "state": 1}


@pytest.mark.parametrize(
    ("key", "path", "method", "status", "message"),
    [
        (None, "/v1/projects/sim-project", "GET", 401, "error identifying user"),
        ("wrong", "/v1/projects/sim-project", "GET", 401, "error identifying user"),
        ("sim-key", "/v1/projects/other/devices", "GET", 403, "permission denied for this project"),
        ("sim-key", "/v1/nothing-here", "GET", 404, "Not Found"),
        ("sim-key", "/v1/projects/sim-project/devices/ffffffffffffffffffffffff", "GET", 404, None),
        ("sim-key", "/v1/projects/sim-project/devices", "POST", 501, "Method Not Allowed"),
    ],
)
def test_errors_are_grpc_gateway_bodies(sim, key, path, method, status, message):
    headers = {"x-api-key": key} if key else {}

    response = requests.request(method, sim.base_url + path, headers=headers, timeout=5)

    body = response.json()
    assert response.status_code == status and body["details"] == []
    assert body["message"] == (message or "device ffffffffffffffffffffffff not found")


def test_keep_alive_serves_many_calls_on_one_connection(sim, api):
    for _ in range(5):
        assert api("GET", "").status_code == 200
    api("GET", "/devices/unknown")

    assert (sim.connections, sim.calls, sim.call_counts["project"]) == (1, 6, 5)


def test_calls_are_counted_and_reset(sim, api, window):
    api("GET", "")
    api("POST", "/stream", json=stream_body(window))

    assert (sim.calls, dict(sim.call_counts)) == (2, {"project": 1, "stream": 1})
    sim.reset_counters()
    assert (sim.calls, dict(sim.call_counts), len(sim.requests)) == (0, {}, 0)


def test_latency_is_added_to_every_call(sim, api):
    sim.latency = 0.1
    began = time.monotonic()
    api("GET", "")
    assert time.monotonic() - began >= 0.1


# --- faults ------------------------------------------------------------------------------------


def test_fault_429_has_retry_after_and_grpc_body(sim, api):
    sim.faults = FaultConfig(rate=1.0, kinds=("429",), retry_after=2)

    response = api("GET", "")

    assert response.status_code == 429 and response.headers["Retry-After"] == "2"
    assert response.json()["code"] == 8


def test_fault_truncate_sends_half_the_announced_body(sim):
    sim.faults = FaultConfig(rate=1.0, kinds=("truncate",))
    conn = http.client.HTTPConnection(sim.base_url.removeprefix("http://"), timeout=5)
    conn.request("GET", f"/v1/projects/{sim.project_id}", headers={"x-api-key": sim.api_key})
    response = conn.getresponse()

    with pytest.raises(http.client.IncompleteRead) as info:
        response.read()

    announced = int(response.getheader("Content-Length"))
    assert 0 < len(info.value.partial) == announced // 2
    conn.close()


def test_fault_reset_closes_without_answering(sim, api):
    sim.faults = FaultConfig(rate=1.0, kinds=("reset",))

    with pytest.raises(requests.ConnectionError):
        api("GET", "")


def test_fault_timeout_answers_late(sim, api):
    sim.faults = FaultConfig(rate=1.0, kinds=("timeout",), slow_seconds=1.0)

    with pytest.raises(requests.Timeout):
        api("GET", "", timeout=0.1)
    assert sim.calls == 1


def test_faults_are_deterministic_with_a_seed_and_stop_when_cleared(api, sim):
    def run() -> list[int]:
        sim.faults = FaultConfig(rate=0.5, kinds=("500", "503"), seed=42)
        return [api("GET", "").status_code for _ in range(20)]

    first, second = run(), run()
    sim.faults = None

    assert first == second and {500, 503, 200} == set(first)
    assert all(api("GET", "").status_code == 200 for _ in range(10))


def test_serves_concurrent_requests(sim, window):
    sim.latency = 0.2
    url = f"{sim.base_url}/v1/projects/{sim.project_id}"
    threads = [
        threading.Thread(
            target=requests.get,
            args=(url,),
            kwargs={"headers": {"x-api-key": "sim-key"}, "timeout": 5},
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sim.max_in_flight == 4


# --- fleet and webhooks ------------------------------------------------------------------------


def test_seed_fleet_is_deterministic(window):
    def snapshot(seed: int):
        simulator = GoliothSimulator(seed=seed)
        fleet = simulator.seed_fleet(40, 5, start=window[0], end=window[1])
        return [(d.id, d.tag_ids, d.cohort_id, d.last_report) for d in fleet], simulator.readings()

    first, again, other = snapshot(1), snapshot(1), snapshot(2)
    devices, readings = first

    assert first == again and first != other
    assert len(readings) == 38 * 5 and all(window[0] <= r.timestamp < window[1] for r in readings)
    never = [d for d in devices if d[3] is None]
    assert len(never) == 2 and len({d[2] for d in devices}) > 2 and any(d[1] for d in devices)


@pytest.mark.parametrize("content_type", ["application/json", "application/cbor"])
def test_send_webhook_plain_headers_and_stored_reading(sim, stub_server, window, content_type):
    device = sim.add_device(name="pusher")
    when = window[0] + timedelta(microseconds=123456)

    response = sim.send_webhook(
        stub_server.url + "/hook/",
        device_id=device.id,
        data={"temp": 21.5},
        content_type=content_type,
        headers={"Authorization": "s3cret"},
        time=when,
    )

    method, path, headers, body = stub_server.received[0]
    assert response.status_code == 200 and (method, path) == ("POST", "/hook/")
    assert headers["Ce-Source"] == device.id and headers["Ce-Subject"] == sim.project_id
    assert (
        headers["Ce-Type"] == "io.golioth.data.v1/.s/sensor" and headers["Ce-Specversion"] == "1.0"
    )
    assert headers["Ce-Time"] == "2026-03-01T12:00:00.123456Z" and len(headers["Ce-Id"]) == 36
    assert headers["Content-Type"] == content_type and headers["Authorization"] == "s3cret"
    decoded = cbor2.loads(body) if content_type == "application/cbor" else json.loads(body)
    assert decoded == {"temp": 21.5}
    assert [(r.device_external_id, r.timestamp, r.payload) for r in sim.readings()] == [
        (device.id, when, {"temp": 21.5})
    ]


@pytest.mark.parametrize("shape", ["inject-metadata", "legacy"])
def test_send_webhook_envelopes(sim, stub_server, window, shape):
    device = sim.add_device(name="pusher")
    when = window[0] + timedelta(microseconds=512133)

    sim.send_webhook(
        stub_server.url, device_id=device.id, data={"t": 1}, shape=shape, time=when, store=False
    )

    _, _, headers, body = stub_server.received[0]
    assert json.loads(body) == {
        "data": {"t": 1},
        "device_id": device.id,
        "project_id": sim.project_id,
        "timestamp": {"seconds": int(window[0].timestamp()), "nanos": 512133000},
    }
    legacy = ("golioth/app/gateway/coap", "stream", "DEVICE_STREAM_TYPE")
    expected = (
        legacy if shape == "legacy" else (device.id, sim.project_id, "io.golioth.data.v1/.s/sensor")
    )
    assert (headers["Ce-Source"], headers["Ce-Subject"], headers["Ce-Type"]) == expected
    assert sim.readings() == []


def test_send_webhook_without_ce_time_and_nested_store(sim, stub_server, window):
    device = sim.add_device(name="legacy-pipeline")

    sim.send_webhook(
        stub_server.url, device_id=device.id, data={"temp": 3}, path="env/air",
        include_ce_time=False, time=window[0], nest_under_path=True,
    )  # fmt: skip

    assert "Ce-Time" not in stub_server.received[0][2]
    assert sim.readings()[0].payload == {"env": {"air": {"temp": 3}}}


def test_golioth_simulator_command_serves_until_stopped():
    out = io.StringIO()

    call_command(
        "golioth_simulator", port=0, devices=5, readings_per_device=3, stop_after=0.3, stdout=out
    )

    text = out.getvalue()
    assert "http://127.0.0.1:" in text and "sim-project" in text and "sim-key" in text
