"""The integration page as a control panel (issue 12): the facts above the form, the buttons,
the last runs and the run history chart."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone
from django_q.models import OrmQ

from integrations.models import ActivityLog, DeviceIntegration
from telemetry.counts import minute_start
from telemetry.ingest import Reading, ingest_readings
from telemetry.models import TelemetryRecord
from telemetry.retention import prune_telemetry

CHANGELIST = "/admin/integrations/deviceintegration/"


def change_url(integration) -> str:
    return f"{CHANGELIST}{integration.pk}/change/"


def act_url(integration) -> str:
    return f"{CHANGELIST}{integration.pk}/act/"


def page(response) -> str:
    return response.content.decode()


def run(integration, *, at, status="success", inserted=0, ms=1500, kind="sync_import"):
    return ActivityLog.objects.log(
        integration,
        activity_type=kind,
        status=status,
        started_at=at,
        completed_at=at + timedelta(milliseconds=ms),
        response_time_ms=ms,
        readings_fetched=inserted + 2,
        readings_inserted=inserted,
        readings_duplicate=2,
        window_start=at - timedelta(minutes=5),
        window_end=at - timedelta(seconds=30),
    )


def reading(device, at):
    return TelemetryRecord.objects.create(
        device=device,
        integration=device.integration,
        telemetry={"t": 1},
        device_timestamp=at,
        source="sync",
        dedup_key=uuid.uuid4(),
    )


# --- the header ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_panel_shows_the_header_facts_above_the_form(admin_client, make_integration, make_device):
    now = timezone.now()
    error = "Golioth answered 503 three times\nTraceback (most recent call last):\n  line 2"
    integration = make_integration(
        last_sync_at=now - timedelta(minutes=3),
        last_sync_status="failed",
        consecutive_failures=2,
        sync_error=error,
        sync_cursor=now - timedelta(minutes=40),
        verified_through=datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC),
        settings={"syncIntervalSeconds": 300},
    )
    device = make_device(integration)
    for minutes in (5, 30, 90):  # two in the last hour, three in 24 h
        reading(device, now - timedelta(minutes=minutes))

    html = page(admin_client.get(change_url(integration)))

    panel = html.index('id="gsync-panel"')
    assert panel < html.index('id="deviceintegration_form"')
    header = html[panel : html.index('id="deviceintegration_form"')]
    assert re.search(r"background: #c62828;[^>]*>failing</span>", header)
    assert "2 failed runs in a row: Golioth answered 503 three times" in header
    assert "Traceback (most recent call last):\n  line 2" in header  # the error in full
    assert re.search(r"Next run</th><td>in 1\xa0minute \(\d\d:\d\d:\d\d UTC\)", header)
    assert re.search(r"background: #e65100;[^>]*>40 min \(behind\)</span>", header)  # cursor
    assert "5 min (ok)" in header  # the newest reading
    assert "2020-" not in header and "2026-03-01 12:00:05 UTC" in header
    assert "2 in the last hour, 3 in the last 24 h" in header


@pytest.mark.django_db
def test_panel_is_not_on_the_add_page(admin_client):
    html = page(admin_client.get(f"{CHANGELIST}add/"))
    assert 'id="gsync-panel"' not in html
    assert 'id="deviceintegration_form"' in html


# --- the buttons ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_panel_buttons_post_with_csrf_to_the_actions(admin_client, integration):
    html = page(admin_client.get(change_url(integration)))
    form = html[html.index('class="gsync-buttons"') - 80 :]
    form = form[: form.index("</form>")]
    assert f'action="{act_url(integration)}"' in form and "csrfmiddlewaretoken" in form
    for name in ("sync_now", "verify_completeness", "test_connection", "backfill", "pause"):
        assert f'name="action" value="{name}"' in form
    assert 'value="resume"' not in form  # active: Pause, not Resume


@pytest.mark.django_db
def test_panel_sync_now_queues_and_comes_back_with_the_message(admin_client, integration):
    response = admin_client.post(act_url(integration), {"action": "sync_now"})
    assert response.status_code == 302 and response.url == change_url(integration)
    html = page(admin_client.get(response.url))
    assert "Sync of “fleet” queued" in html
    assert OrmQ.objects.count() == 1


@pytest.mark.django_db
def test_panel_pause_then_resume(admin_client, integration):
    html = page(admin_client.post(act_url(integration), {"action": "pause"}, follow=True))
    assert "Paused: fleet (" in html  # with a link to its activity entry
    integration.refresh_from_db()
    assert integration.status == "paused"
    assert 'name="action" value="resume"' in html and 'value="pause"' not in html
    admin_client.post(act_url(integration), {"action": "resume"})
    integration.refresh_from_db()
    assert integration.status == "active"


@pytest.mark.django_db
def test_panel_backfill_goes_on_to_its_form(admin_client, integration):
    response = admin_client.post(act_url(integration), {"action": "backfill"})
    assert response.status_code == 302
    assert response.url == f"{CHANGELIST}{integration.pk}/backfill/"


@pytest.mark.django_db
def test_panel_refuses_unknown_actions_and_get(admin_client, integration):
    html = page(admin_client.post(act_url(integration), {"action": "delete_selected"}, follow=True))
    assert "No action “delete_selected” you may run on this page." in html
    assert DeviceIntegration.objects.filter(pk=integration.pk).exists()
    assert admin_client.get(act_url(integration)).status_code == 405


@pytest.mark.django_db
def test_panel_buttons_need_the_permissions(client, integration):
    viewer = User.objects.create_user("viewer", password="pw-12345-xyz", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_deviceintegration"))
    client.force_login(viewer)
    html = page(client.get(change_url(integration)))
    assert 'id="gsync-panel"' in html and 'class="gsync-buttons"' not in html
    html = page(client.post(act_url(integration), {"action": "sync_now"}, follow=True))
    assert "you may run on this page" in html
    assert OrmQ.objects.count() == 0


# --- last runs and history -----------------------------------------------------------------------


@pytest.mark.django_db
def test_panel_lists_the_last_ten_runs_linked_to_their_entries(admin_client, integration):
    now = timezone.now()
    runs = [run(integration, at=now - timedelta(minutes=5 * n + 5), inserted=n) for n in range(12)]
    failed = run(integration, at=now - timedelta(seconds=10), status="failed", ms=61_000)
    ActivityLog.objects.log(integration, activity_type="sync_skipped", status="skipped")
    html = page(admin_client.get(change_url(integration)))
    table = html[html.index('class="gsync-runs"') : html.index("Run history, last 7 days")]
    links = re.findall(r'href="/admin/integrations/activitylog/(\d+)/change/"', table)
    assert [int(pk) for pk in links] == [failed.pk, *(r.pk for r in runs[:9])]
    assert re.search(r"background: #c62828;[^>]*>Failed</span>", table)
    assert "1 min 1 s" in table and "1.5 s" in table
    assert "3 fetched, 1 new, 2 dup." in table
    window_start = (runs[0].window_start).astimezone(UTC)
    assert f"{window_start:%Y-%m-%d %H:%M:%S} – " in table


@pytest.mark.django_db
def test_panel_history_chart_has_bars_for_the_runs(admin_client, integration):
    now = timezone.now()
    run(integration, at=now - timedelta(days=2), inserted=40, ms=4000)
    run(integration, at=now - timedelta(days=1), status="failed", ms=9000)
    run(integration, at=now - timedelta(days=9), inserted=999)  # older than 7 days
    html = page(admin_client.get(change_url(integration)))
    history = html[html.index("Run history, last 7 days") :]
    assert "<script" not in history.split("</svg>")[0]
    titles = re.findall(r'<rect class="gsync-bar"[^>]*><title>([^<]*)</title>', history)
    assert len([t for t in titles if t.endswith("longest run")]) == 2
    assert [t.split(": ")[1] for t in titles if t.endswith("readings inserted")] == [
        "40 readings inserted"
    ]
    assert [t.split(": ")[1] for t in titles if t.endswith("failed runs")] == ["1 failed runs"]
    assert "2 runs in 7 days" in history


# --- the counts ----------------------------------------------------------------------------------


def test_panel_and_dashboard_count_the_readings_stored_after_duplicates_corrections_and_prune(
    admin_client, integration, make_device
):
    device = make_device(integration)
    now = timezone.now()

    def store(*minutes_ago: float, exact: bool = True) -> None:
        ingest_readings(
            [
                Reading(
                    device.pk,
                    device.external_id,
                    now - timedelta(minutes=m),
                    {"m": m},
                    time_exact=exact,
                )
                for m in minutes_ago
            ],
            integration_id=integration.pk,
            source="sync",
        )

    store(2, 30, 59, 61, 600, 1500, 2000)
    store(2, 30, 600)  # duplicates: not counted again
    store(5, exact=False)  # a webhook's receive time, an hour's reading...
    ingest_readings(  # ...corrected by the pull's exact copy to 70 minutes ago
        [Reading(device.pk, device.external_id, now - timedelta(minutes=5, seconds=90), {"m": 5})],
        integration_id=integration.pk,
        source="sync",
        time_tolerance=timedelta(minutes=2),
    )
    prune_telemetry(integration_id=integration.pk, cutoff=now - timedelta(minutes=1000))
    stored = TelemetryRecord.objects.filter(integration=integration)
    hour = stored.filter(device_timestamp__gte=minute_start(now - timedelta(hours=1))).count()
    day = stored.filter(device_timestamp__gte=minute_start(now - timedelta(days=1))).count()
    assert (hour, day) == (4, 6)  # 2, 6½, 30, 59; and 61, 600

    header = page(admin_client.get(change_url(integration)))
    dashboard = page(admin_client.get("/admin/"))

    assert f"{hour} in the last hour, {day} in the last 24 h" in header
    assert f"{day} readings stored in the last 24 hours, counted by reading time" in dashboard
