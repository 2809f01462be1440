"""CSV and JSON-lines export of the readings list and the activity log (issue 12 point 6):
every row of the list as it is filtered and searched, streamed."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

from integrations.models import ActivityLog
from tests.telemetry.test_admin import READINGS_URL, START, add_readings, fleet  # noqa: F401

ACTIVITY_URL = "/admin/integrations/activitylog/"


def export(client, url: str, fmt: str, params: dict | None = None):
    response = client.get(f"{url}export/{fmt}/", params or {})
    assert response.status_code == 200, response.content
    assert response.streaming
    return response, b"".join(response.streaming_content).decode()


def test_readings_csv_export_follows_the_time_range_and_search(admin_client, fleet):  # noqa: F811
    add_readings(fleet[0], 150)  # more than a page: the export is not the page
    add_readings(fleet[1], 10)
    params = {"from": "2026-03-01 12:10", "to": "2026-03-01 14:00", "q": "weather-berlin"}

    response, text = export(admin_client, READINGS_URL, "csv", params)

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="telemetry-readings-')
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 110  # 12:10 up to 13:59, one a minute
    assert {row["device"] for row in rows} == {"weather-berlin"}
    assert {row["device_id"] for row in rows} == {fleet[0].external_id}
    newest = rows[0]  # the list's order: newest first
    assert newest["device_timestamp"] == "2026-03-01T13:59:00Z"
    assert json.loads(newest["telemetry"]) == {"seq": 119, "temp": 139}
    assert (newest["path"], newest["source"], newest["time_exact"]) == ("sensor", "sync", "True")


def test_readings_list_links_its_exports_with_its_filters(admin_client, fleet):  # noqa: F811
    page = admin_client.get(READINGS_URL, {"from": "24h", "source__exact": "sync"}).content
    html = page.decode()

    assert f"{READINGS_URL}export/csv/?" in html and f"{READINGS_URL}export/jsonl/?" in html
    assert "from=24h" in html.split("export/csv/?")[1].split('"')[0]
    assert "source__exact=sync" in html.split("export/jsonl/?")[1].split('"')[0]


def test_activity_json_lines_export_follows_the_status_filter(admin_client, integration):
    at = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
    for i, status in enumerate(["success", "failed", "failed", "skipped"]):
        ActivityLog.objects.log(
            integration,
            activity_type=ActivityLog.ActivityType.SYNC_IMPORT,
            status=status,
            message=f"run {i}",
            error_message="Golioth said 500" if status == "failed" else "",
            started_at=at + timedelta(seconds=i),
            completed_at=at + timedelta(seconds=i, milliseconds=300),
        )

    response, text = export(admin_client, ACTIVITY_URL, "jsonl", {"status__exact": "failed"})

    assert response["Content-Type"] == "application/x-ndjson"
    entries = [json.loads(line) for line in text.splitlines()]
    assert [e["message"] for e in entries] == ["run 2", "run 1"]
    assert entries[0]["integration"] == integration.name
    assert entries[0]["started_at"] == "2026-03-01T12:00:07Z"
    assert entries[0]["error_message"] == "Golioth said 500"


def test_export_with_a_bad_time_range_says_why_and_sends_no_rows(admin_client, fleet):  # noqa: F811
    add_readings(fleet[0], 3)

    response = admin_client.get(f"{READINGS_URL}export/csv/", {"from": "last tuesday"})

    assert response.status_code == 400
    assert "'last tuesday' is not a time" in response.content.decode()


def test_export_needs_a_staff_login(client, fleet):  # noqa: F811
    add_readings(fleet[0], 3)

    response = client.get(f"{READINGS_URL}export/csv/")

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
