from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from gsync.admin_display import CappedCountPaginator
from telemetry.models import Device, TelemetryRecord

DEVICES_URL = "/admin/telemetry/device/"
READINGS_URL = "/admin/telemetry/telemetryrecord/"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def add_readings(device: Device, n: int, *, start: datetime = START, **fields) -> None:
    TelemetryRecord.objects.bulk_create(
        TelemetryRecord(
            device=device,
            integration_id=device.integration_id,
            path=fields.get("path", "sensor"),
            telemetry={"temp": 20 + i, "seq": i},
            device_timestamp=start + timedelta(minutes=i),
            source=fields.get("source", "sync"),
            dedup_key=uuid.uuid4(),
        )
        for i in range(n)
    )


def get(client, url: str) -> tuple[str, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return response.content.decode(), [q["sql"] for q in queries]


@pytest.fixture
def fleet(make_integration, make_device) -> list[Device]:
    integration = make_integration("fleet")
    return [
        make_device(
            integration,
            "686d5da09c3ca8d766c1672b",
            name="weather-berlin",
            hardware_ids=["20250708180416-c252400001"],
            tag_ids=["outdoor", "v2"],
            status="online",
            last_seen=START,
            firmware_version="1.2.5",
        ),
        make_device(
            integration,
            "686d5da09c3ca8d766c16799",
            name="pump-hamburg",
            hardware_ids=["HW-PUMP-77"],
            status="offline",
            firmware_version="1.1.0",
        ),
        make_device(integration, "686d5da09c3ca8d766c16700", name="spare", status="never"),
    ]


# --- devices ------------------------------------------------------------------------------------


def test_device_changelist_shows_status_firmware_and_tags(admin_client, fleet):
    page, _ = get(admin_client, DEVICES_URL)

    assert "weather-berlin" in page and "686d5da09c3ca8d766c1672b" in page
    assert "1.2.5" in page and "outdoor, v2" in page
    assert "Online" in page and "Never connected" in page


@pytest.mark.parametrize(
    ("term", "found"),
    [
        ("weather", "weather-berlin"),
        ("686d5da09c3ca8d766c16799", "pump-hamburg"),
        ("c252400001", "weather-berlin"),  # part of a hardware id
        ("hw-pump", "pump-hamburg"),  # hardware ids, any case
    ],
)
def test_device_search_by_name_golioth_id_and_hardware_id(admin_client, fleet, term, found):
    response = admin_client.get(DEVICES_URL, {"q": term})

    names = [str(device) for device in response.context["cl"].result_list]
    assert names == [found]


def test_device_filter_by_status_and_firmware(admin_client, fleet):
    by_status = admin_client.get(DEVICES_URL, {"status__exact": "offline"})
    by_firmware = admin_client.get(DEVICES_URL, {"firmware_version": "1.2.5"})

    assert [str(d) for d in by_status.context["cl"].result_list] == ["pump-hamburg"]
    assert [str(d) for d in by_firmware.context["cl"].result_list] == ["weather-berlin"]


def test_device_page_shows_latest_readings(admin_client, fleet):
    device = fleet[0]
    add_readings(device, 25)

    page, _ = get(admin_client, f"{DEVICES_URL}{device.pk}/change/")

    assert "&quot;seq&quot;: 24" in page  # the newest
    assert "&quot;seq&quot;: 5," in page  # the 20th newest
    assert "&quot;seq&quot;: 4," not in page
    assert "The newest 20 are shown." in page
    assert f"{READINGS_URL}?device={device.pk}" in page
    assert 'name="_save"' not in page  # read-only: it all comes from Golioth


def test_device_page_shows_readings_as_a_table_of_flattened_keys(admin_client, fleet):
    """Issue 12: twenty pretty-printed readings made a device page ~4,000 px long."""
    device = fleet[0]
    reading = {"temp": 21.5, "env": {"hum": 40, "air": {"co2": 410}}, "tags": ["a", "b"]}
    TelemetryRecord.objects.create(
        device=device,
        integration_id=device.integration_id,
        telemetry=reading,
        device_timestamp=START,
        source="webhook",
        dedup_key=uuid.uuid4(),
    )

    page, _ = get(admin_client, f"{DEVICES_URL}{device.pk}/change/")

    table = page.split('class="gsync-readings"')[1].split("</table>")[0]
    headers = re.findall(r"<th[^>]*>([^<]*)</th>", table)
    assert headers == ["Time", "Path", "Source", "env.air.co2", "env.hum", "tags", "temp", "Raw"]
    cells = re.findall(r'<td><span title="([^"]*)">', table)
    assert cells == ["410", "40", "[&quot;a&quot;,&quot;b&quot;]", "21.5"]
    assert "2026-03-01 12:00:00" in table and "Webhook" in table
    assert "<details><summary>JSON</summary>" in table  # the raw reading on demand
    assert "&quot;co2&quot;: 410" in table


def test_device_page_bounds_its_reading_columns(admin_client, fleet):
    device = fleet[0]
    TelemetryRecord.objects.create(
        device=device,
        integration_id=device.integration_id,
        telemetry={f"k{i:02}": "x" * 100 for i in range(12)},
        device_timestamp=START,
        dedup_key=uuid.uuid4(),
    )

    page, _ = get(admin_client, f"{DEVICES_URL}{device.pk}/change/")

    table = page.split('class="gsync-readings"')[1].split("</table>")[0]
    assert ">k07<" in table and ">k08<" not in table and "+4 keys" in table
    assert f'title="{"x" * 100}">{"x" * 23}…<' in table  # cut, the whole value on hover
    assert "&quot;k11&quot;" in table  # every key in the raw JSON


def test_device_cannot_be_added_by_hand(admin_client, fleet):
    assert admin_client.get(f"{DEVICES_URL}add/").status_code == 403


def test_device_changelist_queries_do_not_grow(admin_client, make_integration, make_device):
    integrations = [make_integration(f"fleet-{i}") for i in range(3)]
    for i in range(5):
        make_device(integrations[i % 3], f"d{i}", firmware_version=f"1.{i}")
    _, small = get(admin_client, DEVICES_URL)
    for i in range(5, 30):
        make_device(integrations[i % 3], f"d{i}", firmware_version=f"1.{i}")

    _, large = get(admin_client, DEVICES_URL)

    assert len(large) == len(small)


# --- telemetry ----------------------------------------------------------------------------------


def test_telemetry_changelist_queries_do_not_grow(admin_client, fleet):
    add_readings(fleet[0], 3)
    add_readings(fleet[1], 2)
    _, small = get(admin_client, READINGS_URL)
    add_readings(fleet[2], 25, start=START + timedelta(days=1))

    _, large = get(admin_client, READINGS_URL)

    assert len(large) == len(small)


def test_telemetry_changelist_filters_by_device_from_its_page(admin_client, fleet):
    add_readings(fleet[0], 3)
    add_readings(fleet[1], 4)

    response = admin_client.get(READINGS_URL, {"device": fleet[1].pk})

    assert {r.device_id for r in response.context["cl"].result_list} == {fleet[1].pk}
    assert "pump-hamburg" in response.content.decode()  # the filter names the chosen device


def test_telemetry_search_by_golioth_device_id(admin_client, fleet):
    add_readings(fleet[0], 3)
    add_readings(fleet[1], 4)

    response = admin_client.get(READINGS_URL, {"q": fleet[0].external_id})

    assert len(response.context["cl"].result_list) == 3


def test_telemetry_search_by_device_name_any_case(admin_client, fleet):
    """Issue 12: "SIM00003" found nothing: the readings list searched Golioth ids only."""
    add_readings(fleet[0], 3)
    add_readings(fleet[1], 4)

    response = admin_client.get(READINGS_URL, {"q": "PUMP-Hamburg"})

    assert {r.device_id for r in response.context["cl"].result_list} == {fleet[1].pk}
    assert len(response.context["cl"].result_list) == 4


def test_telemetry_search_names_devices_first_then_reads_theirs_by_id(
    admin_client, fleet, make_device
):
    """At 5M readings the search joined to devices took 8 s: PostgreSQL walked every device's
    newest readings to find one device's. A quoted name of several words is one name."""
    boiler = make_device(fleet[0].integration, "686d5da09c3ca8d766c16711", name="Boiler room 2")
    add_readings(boiler, 2)
    add_readings(fleet[1], 4)

    page, queries = get(admin_client, f'{READINGS_URL}?q="boiler ROOM 2"')

    counts = [sql for sql in queries if "COUNT(" in sql.upper() and "telemetry" in sql]
    assert counts and not any('"devices"' in sql for sql in counts)
    assert "2 results" in page
    unknown, _ = get(admin_client, f"{READINGS_URL}?q=no-such-device")
    assert "0 results" in unknown


def test_telemetry_filter_by_source(admin_client, fleet):
    add_readings(fleet[0], 3, source="webhook")
    add_readings(fleet[1], 4, source="sync")

    response = admin_client.get(READINGS_URL, {"source__exact": "webhook"})

    assert len(response.context["cl"].result_list) == 3


def test_telemetry_changelist_never_counts_the_whole_table(admin_client, fleet, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "cap", 5)
    add_readings(fleet[0], 12)

    page, queries = get(admin_client, READINGS_URL)

    counts = [sql for sql in queries if "COUNT(" in sql.upper()]
    assert counts and all("LIMIT" in sql.upper() for sql in counts)
    assert "5+ telemetry readings" in re.sub(r"\s+", " ", page)
    searched, _ = get(admin_client, f"{READINGS_URL}?q={fleet[0].external_id}")
    assert "5+ results" in searched


def test_telemetry_far_page_skips_keys_not_rows_and_shows_its_readings_in_order(
    admin_client, fleet
):
    add_readings(fleet[0], 130)
    add_readings(fleet[1], 120, start=START + timedelta(seconds=30))
    newest_first = list(TelemetryRecord.objects.order_by("-device_timestamp", "-id"))

    response = admin_client.get(READINGS_URL, {"p": 3})
    _, queries = get(admin_client, f"{READINGS_URL}?p=3")

    shown = list(response.context["cl"].result_list)
    assert [r.pk for r in shown] == [r.pk for r in newest_first[200:250]]
    assert (
        "pump-hamburg" in response.content.decode()
        and "weather-berlin" in response.content.decode()
    )
    skipping = [sql for sql in queries if "OFFSET" in sql.upper()]
    # The OFFSET query reads the ordering's index (the keys), not whole readings.
    assert skipping and all('"telemetry"' not in sql.split("FROM")[0] for sql in skipping)


def test_telemetry_small_result_shows_exact_count(admin_client, fleet):
    add_readings(fleet[0], 3)

    page, _ = get(admin_client, READINGS_URL)

    assert "3 telemetry readings" in re.sub(r"\s+", " ", page)


def test_telemetry_date_drilldown_without_distinct_dates(admin_client, fleet):
    add_readings(fleet[0], 2, start=datetime(2025, 12, 31, 23, 0, tzinfo=UTC))
    add_readings(fleet[0], 2, start=datetime(2026, 1, 15, 8, 0, tzinfo=UTC))
    add_readings(fleet[0], 2, start=datetime(2026, 2, 10, 8, 0, tzinfo=UTC))

    page, queries = get(admin_client, READINGS_URL)
    months, _ = get(admin_client, f"{READINGS_URL}?device_timestamp__year=2026")

    assert not [sql for sql in queries if "DISTINCT" in sql.upper()]
    assert "?device_timestamp__year=2025" in page and "?device_timestamp__year=2026" in page
    assert "device_timestamp__month=1&" in months and "device_timestamp__month=2&" in months
    assert "device_timestamp__month=3&" not in months
    days, _ = get(
        admin_client, f"{READINGS_URL}?device_timestamp__year=2026&device_timestamp__month=1"
    )
    assert "device_timestamp__day=15&" in days and "device_timestamp__day=16&" not in days
    assert 'href="?device_timestamp__year=2026" class="date-back"' in days


def test_telemetry_detail_pretty_prints_and_is_read_only(admin_client, fleet):
    add_readings(fleet[0], 1)
    reading = TelemetryRecord.objects.get()

    page, _ = get(admin_client, f"{READINGS_URL}{reading.pk}/change/")

    assert "&quot;temp&quot;: 20" in page
    assert 'name="_save"' not in page
    assert admin_client.get(f"{READINGS_URL}add/").status_code == 403


def test_mirrored_devices_cannot_be_deleted_from_the_admin(admin_client, fleet):
    """Issue 12: a Delete button on a mirrored device would drop its readings, and the next
    sync brings the device back."""
    page = admin_client.get(f"{DEVICES_URL}{fleet[0].pk}/change/").content.decode()
    assert "deletelink" not in page
    response = admin_client.post(f"{DEVICES_URL}{fleet[0].pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert Device.objects.filter(pk=fleet[0].pk).exists()


# --- time range (issue 12 point 6) ---------------------------------------------------------------


def seqs(response) -> list[int]:
    return sorted(r.telemetry["seq"] for r in response.context["cl"].result_list)


def test_telemetry_filter_by_reading_time_from_and_to(admin_client, fleet):
    add_readings(fleet[0], 20)  # one a minute from 12:00

    response = admin_client.get(
        READINGS_URL, {"from": "2026-03-01 12:05", "to": "2026-03-01T12:10:00Z"}
    )

    assert seqs(response) == [5, 6, 7, 8, 9]  # from inclusive, to exclusive
    page = response.content.decode()
    assert 'value="2026-03-01 12:05"' in page  # the form shows what was typed


def test_telemetry_filter_by_preset_range_keeps_the_search(admin_client, fleet):
    now = datetime.now(UTC)
    add_readings(fleet[0], 3, start=now - timedelta(minutes=30))
    add_readings(fleet[0], 3, start=now - timedelta(hours=3))
    add_readings(fleet[1], 3, start=now - timedelta(minutes=30))

    page = admin_client.get(READINGS_URL).content.decode()
    response = admin_client.get(READINGS_URL, {"from": "1h", "q": "weather-berlin"})

    assert "?from=1h" in page and "Last 24 hours" in page
    assert {r.device_id for r in response.context["cl"].result_list} == {fleet[0].pk}
    assert seqs(response) == [0, 1, 2]
    assert 'name="q" value="weather-berlin"' in response.content.decode()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "yesterday"}, "From: &#x27;yesterday&#x27; is not a time. Use an ISO 8601 date"),
        ({"to": "2026-13-01"}, "To: &#x27;2026-13-01&#x27; is not a time."),
        ({"from": "2026-03-02", "to": "2026-03-01"}, "From must be before To."),
    ],
)
def test_telemetry_bad_time_range_says_why_and_shows_nothing(admin_client, fleet, params, message):
    add_readings(fleet[0], 3)

    response = admin_client.get(READINGS_URL, params)

    assert response.status_code == 200
    page = response.content.decode()
    assert f"Filter by reading time: {message}" in page  # the message at the top
    assert list(response.context["cl"].result_list) == []
    assert TelemetryRecord.objects.count() == 3
