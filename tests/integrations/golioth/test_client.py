"""GoliothClient against the simulator over real HTTP: paging, budgets, errors, retries, limits."""

from __future__ import annotations

import json
import logging
import math
import socket
from datetime import timedelta
from urllib.parse import parse_qs

import pytest

from integrations.golioth.client import GoliothClient
from integrations.golioth.errors import (
    AuthenticationError,
    GoliothError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    UnavailableError,
)
from integrations.golioth.simulator.faults import FaultConfig
from telemetry.keys import canonical_json


def as_set(readings) -> set[tuple[str, object, bytes]]:
    return {(r.device_external_id, r.timestamp, canonical_json(r.payload)) for r in readings}


def flatten(pages) -> list:
    return [reading for page in pages for reading in page]


def stream_pages_requested(sim) -> list[int]:
    return [json.loads(r.body)["page"] for r in sim.requests if r.kind == "stream"]


# --- devices -----------------------------------------------------------------------------------


def test_devices_pages_past_100_zero_based(sim, client, window):
    fleet = sim.seed_fleet(250, 0, start=window[0], end=window[1])

    devices = list(client.iter_devices())

    assert sorted(d.external_id for d in devices) == sorted(d.id for d in fleet)
    pages = [parse_qs(r.query)["page"] for r in sim.requests if r.kind == "devices"]
    assert pages == [["0"], ["1"], ["2"]]
    assert client.stats.calls == sim.calls == 3


def test_devices_exact_hundred_costs_one_call(sim, client, window):
    sim.seed_fleet(100, 0, start=window[0], end=window[1])

    assert len(list(client.iter_devices())) == 100
    assert sim.call_counts["devices"] == 1


def test_devices_filters_are_sent_to_golioth(sim, client, window):
    fleet = sim.seed_fleet(60, 0, start=window[0], end=window[1])

    tagged = {d.external_id for d in client.iter_devices(tags=["building-a", "floor-2"])}
    cohort = {d.external_id for d in client.iter_devices(cohort_id="esp32-sensors")}
    disabled = {d.external_id for d in client.iter_devices(enabled=False)}
    named = [d.external_id for d in client.iter_devices(device_name="SIM00007")]

    assert tagged == {d.id for d in fleet if {"building-a", "floor-2"} <= set(d.tag_ids)}
    assert cohort == {d.id for d in fleet if d.cohort_id == "esp32-sensors"}
    assert disabled == {d.id for d in fleet if not d.enabled} != set()
    assert named == [fleet[7].id]
    assert 0 < len(tagged) < len(fleet)


def test_devices_never_connected_has_no_report_nor_firmware(sim, client):
    sim.add_device(id="6911f0c1a2b3c4d5e6f70812", name="C252400042")

    (device,) = client.iter_devices()

    assert (device.last_report, device.firmware_version, device.firmware) == (None, "", {})


# --- stream ------------------------------------------------------------------------------------


def test_stream_pages_cover_window_once_oldest_first_per_page(sim, client, window):
    sim.seed_fleet(40, 31, start=window[0], end=window[1], never_connected=6)  # 34 x 31 = 1054

    pages = list(client.iter_stream_pages(start=window[0], end=window[1]))

    readings = flatten(pages)
    assert len(readings) == len(as_set(readings)) == 1054
    assert as_set(readings) == as_set(sim.readings())
    for page in pages:
        assert [r.timestamp for r in page] == sorted(r.timestamp for r in page)
    for newer, older in zip(pages, pages[1:], strict=False):
        assert older[-1].timestamp <= newer[0].timestamp  # Golioth pages newest first
    assert sorted(stream_pages_requested(sim)) == list(range(11))  # concurrent: any order
    assert client.stats.calls == sim.calls == math.ceil(1054 / 100)


def test_stream_window_is_start_inclusive_end_exclusive(sim, client, window):
    start, end = window
    device = sim.add_device(name="edge")
    for when in (start - timedelta(microseconds=1), start, end - timedelta(microseconds=1), end):
        sim.add_reading(device.id, when, {"at": when.isoformat()})

    readings = flatten(client.iter_stream_pages(start=start, end=end))

    assert [r.timestamp for r in readings] == [start, end - timedelta(microseconds=1)]


def test_stream_empty_window_costs_one_call(sim, client, window):
    assert list(client.iter_stream_pages(start=window[0], end=window[1])) == []
    assert client.stats.calls == sim.calls == 1


def test_stream_request_body_names_fields_and_filters(sim, client, window):
    device = sim.add_device(name="one", tag_ids=["t1"])

    list(client.iter_stream_pages(start=window[0], end=window[1], device_ids=[device.id]))
    list(client.iter_stream_pages(start=window[0], end=window[1], tags=["t1"]))

    with_ids, with_tags = (json.loads(r.body) for r in sim.requests)
    assert with_ids == {
        "start": "2026-03-01T12:00:00.000000Z",
        "end": "2026-03-01T13:00:00.000000Z",
        "query": {"fields": [{"path": "time"}, {"path": "deviceId"}, {"path": "*"}], "filters": []},
        "deviceId": [device.id],
        "page": 0,
        "perPage": 100,
    }
    assert "deviceId" not in with_tags and with_tags["tags"] == ["t1"]


def test_stream_filters_select_devices(sim, client, window):
    fleet = sim.seed_fleet(12, 5, start=window[0], end=window[1], never_connected=0)
    chosen = {fleet[1].id, fleet[4].id}

    by_id = flatten(client.iter_stream_pages(start=window[0], end=window[1], device_ids=[*chosen]))
    by_tag = flatten(client.iter_stream_pages(start=window[0], end=window[1], tags=["floor-2"]))

    assert {r.device_external_id for r in by_id} == chosen and len(by_id) == 10
    assert {r.device_external_id for r in by_tag} == {d.id for d in fleet if "floor-2" in d.tag_ids}


def test_stream_pages_fetched_concurrently_up_to_the_limit(sim, make_client, window):
    sim.seed_fleet(10, 90, start=window[0], end=window[1], never_connected=0)
    sim.latency = 0.03
    client = make_client(concurrency=3)

    assert len(flatten(client.iter_stream_pages(start=window[0], end=window[1]))) == 900
    assert sim.max_in_flight == 3


def test_stream_stops_fetching_when_the_consumer_stops(sim, make_client, window):
    sim.seed_fleet(10, 300, start=window[0], end=window[1], never_connected=0)  # 30 pages
    client = make_client(concurrency=2)

    pages = client.iter_stream_pages(start=window[0], end=window[1])
    next(pages)
    next(pages)
    pages.close()

    # Page 0, then a look-ahead of 2 x concurrency pages plus one refill: never the whole window.
    assert sim.call_counts["stream"] <= 1 + 4 + 1


def test_device_stream_uses_the_per_device_endpoint(sim, client, window):
    fleet = sim.seed_fleet(5, 30, start=window[0], end=window[1], never_connected=0)

    readings = flatten(
        client.iter_device_stream_pages(device_id=fleet[2].id, start=window[0], end=window[1])
    )

    assert {r.device_external_id for r in readings} == {fleet[2].id} and len(readings) == 30
    assert sim.call_counts == {"device_stream": 1}


def test_stream_naive_window_is_refused(client, window):
    with pytest.raises(ValueError, match="aware"):
        list(client.iter_stream_pages(start=window[0].replace(tzinfo=None), end=window[1]))


def test_get_state_returns_latest_value(sim, client, window):
    device = sim.add_device(name="state")
    sim.add_reading(device.id, window[0], {"sensor": {"temp": 1}})
    sim.add_reading(device.id, window[1], {"sensor": {"temp": 2}})

    assert client.get_state(device.id, "sensor") == {"temp": 2}
    assert client.get_project()["id"] == sim.project_id


# --- errors ------------------------------------------------------------------------------------


def test_auth_401_fails_at_once_and_never_shows_the_key(sim, make_client, caplog):
    secret = "gsync-wrong-key-5d1e9a"
    client = make_client(api_key=secret)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(AuthenticationError) as info:
        client.get_project()

    error = info.value
    assert (
        error.status == 401 and "API key" in str(error) and "error identifying user" in str(error)
    )
    assert (client.stats.calls, client.stats.retries, sim.calls) == (1, 0, 1)
    for text in (str(error), repr(error), repr(client), caplog.text, repr(client.stats)):
        assert secret not in text


def test_wrong_project_403(sim, make_client):
    client = make_client(project_id="someone-elses-project")

    with pytest.raises(PermissionDeniedError) as info:
        list(client.iter_devices())

    assert info.value.status == 403 and "someone-elses-project" in str(info.value)
    assert sim.calls == 1


def test_unknown_device_404(sim, client, window):
    with pytest.raises(NotFoundError) as info:
        list(
            client.iter_device_stream_pages(
                device_id="000000000000000000000000", start=window[0], end=window[1]
            )
        )

    assert info.value.status == 404 and "not found" in str(info.value)
    assert sim.calls == 1


def test_rate_limited_429_honours_retry_after(sim, make_client):
    sim.faults = FaultConfig(rate=1.0, kinds=("429",), retry_after=0.2)
    client = make_client(max_retries=2, backoff_factor=0.0001)

    with pytest.raises(RateLimitedError) as info:
        client.get_project()

    starts = [r.started for r in sim.requests]
    assert len(starts) == 3 and client.stats.retries == 2
    assert all(later - earlier >= 0.18 for earlier, later in zip(starts, starts[1:], strict=False))
    assert "gave up after 3 attempts" in str(info.value)


@pytest.mark.parametrize("kind", ["500", "503", "429", "timeout", "reset", "truncate"])
def test_faults_each_kind_recover_with_the_exact_data(sim, make_client, window, kind):
    fleet = sim.seed_fleet(130, 8, start=window[0], end=window[1])
    sim.faults = FaultConfig(rate=0.2, kinds=(kind,), retry_after=0.01, slow_seconds=0.4, seed=11)
    client = make_client(timeout=0.15, concurrency=3)

    devices = list(client.iter_devices())
    readings = flatten(client.iter_stream_pages(start=window[0], end=window[1]))

    assert sorted(d.external_id for d in devices) == sorted(d.id for d in fleet)
    assert len(readings) == len(sim.readings()) and as_set(readings) == as_set(sim.readings())
    assert sum(1 for r in sim.requests if r.fault == kind) >= 1
    assert client.stats.calls == sim.calls and client.stats.retries >= 1


def test_persistent_5xx_gives_up_after_bounded_tries(sim, make_client):
    sim.faults = FaultConfig(rate=1.0, kinds=("503",))
    client = make_client(max_retries=3)

    with pytest.raises(UnavailableError) as info:
        client.get_project()

    assert info.value.status == 503 and "service unavailable" in str(info.value)
    assert (client.stats.calls, client.stats.retries, sim.calls) == (4, 3, 4)


def test_timeout_trips_the_client_timeout_and_is_retried(sim, make_client):
    sim.faults = FaultConfig(rate=1.0, kinds=("timeout",), slow_seconds=1.0)
    client = make_client(timeout=0.1, max_retries=1)

    with pytest.raises(UnavailableError, match="did not answer"):
        client.get_project()

    assert (client.stats.calls, sim.calls) == (2, 2)


def test_unreachable_base_url_is_unavailable():
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = GoliothClient(
        base_url=f"http://127.0.0.1:{port}",
        api_key="k",
        project_id="p",
        max_retries=2,
        backoff_factor=0.001,
    )

    with pytest.raises(UnavailableError, match="cannot reach Golioth") as info:
        client.get_project()

    assert info.value.status is None and client.stats.calls == 3


def test_body_not_json_is_retried_then_malformed(stub_server):
    stub_server.body = b"<html>bad gateway</html>"
    client = GoliothClient(
        base_url=stub_server.url, api_key="k", project_id="p", max_retries=2, backoff_factor=0.001
    )

    with pytest.raises(MalformedResponseError, match="not JSON"):
        client.get_project()

    assert len(stub_server.received) == client.stats.calls == 3


def test_wrong_envelope_is_malformed_at_once(stub_server, window):
    stub_server.body = b'{"data": {"list": []}}'
    client = GoliothClient(base_url=stub_server.url, api_key="k", project_id="p")

    with pytest.raises(MalformedResponseError):
        list(client.iter_stream_pages(start=window[0], end=window[1]))
    assert len(stub_server.received) == 1


def test_golioth_message_in_error_is_scrubbed_of_the_key(stub_server):
    stub_server.status, stub_server.body = 401, b'{"code": 16, "message": "bad key secret-123"}'
    client = GoliothClient(base_url=stub_server.url, api_key="secret-123", project_id="p")

    with pytest.raises(AuthenticationError) as info:
        client.get_project()

    assert "secret-123" not in str(info.value) and "[redacted]" in str(info.value)
    assert stub_server.received[0][2]["x-api-key"] == "secret-123"


# --- rate limit --------------------------------------------------------------------------------


def test_rate_limiter_keeps_requests_per_second_under_the_limit(sim, make_client, window):
    sim.seed_fleet(10, 250, start=window[0], end=window[1], never_connected=0)  # 25 pages
    client = make_client(max_requests_per_second=20.0, concurrency=4)

    assert len(flatten(client.iter_stream_pages(start=window[0], end=window[1]))) == 2500

    starts = sorted(r.started for r in sim.requests)
    busiest = max(sum(1 for s in starts if first <= s < first + 1.0) for first in starts)
    assert len(starts) == 25 and busiest <= 20 + 3
    assert starts[-1] - starts[0] >= 24 / 20 * 0.8


def test_retries_pass_through_the_rate_limiter(sim, make_client):
    sim.faults = FaultConfig(rate=1.0, kinds=("500",))
    client = make_client(max_requests_per_second=10.0, max_retries=4, backoff_factor=0.0)

    with pytest.raises(UnavailableError):
        client.get_project()

    starts = [r.started for r in sim.requests]
    assert len(starts) == 5 and starts[-1] - starts[0] >= 4 / 10 * 0.8


# --- redirects -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_an_error_and_the_key_never_follows_it(make_stub_server, status):
    elsewhere = make_stub_server()
    redirect = make_stub_server()
    redirect.status, redirect.body = status, b""
    redirect.headers = {"Location": f"{elsewhere.url}/v1/projects/p"}
    client = GoliothClient(base_url=redirect.url, api_key="secret-123", project_id="p")

    with pytest.raises(GoliothError, match=f"redirect \\({status}\\)") as info:
        client.get_project()

    assert elsewhere.received == []
    assert len(redirect.received) == client.stats.calls == 1  # not retried
    assert info.value.status == status and "secret-123" not in str(info.value)
