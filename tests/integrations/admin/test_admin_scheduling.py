from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import OrmQ

from integrations.models import ActivityLog, DeviceIntegration
from telemetry.models import TelemetryRecord

CHANGELIST = "/admin/integrations/deviceintegration/"
ACTIONS = ["sync_now", "verify_completeness", "test_connection", "backfill", "pause", "resume"]


def act(client, action: str, *integrations: DeviceIntegration, follow: bool = True):
    data = {"action": action, "_selected_action": [i.pk for i in integrations]}
    return client.post(CHANGELIST, data, follow=follow)


def page(response) -> str:
    return response.content.decode()


# --- registered ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_actions_are_registered(admin_client, rf, admin_user, integration):
    request = rf.get(CHANGELIST)
    request.user = admin_user
    registered = admin.site._registry[DeviceIntegration].get_actions(request)
    assert set(ACTIONS) <= set(registered)
    html = page(admin_client.get(CHANGELIST))
    for action in ACTIONS:
        assert f'value="{action}"' in html


@pytest.mark.django_db
def test_actions_need_change_permission(client, integration):
    from django.contrib.auth.models import Permission, User

    viewer = User.objects.create_user("viewer", password="pw-12345-xyz", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_deviceintegration"))
    client.force_login(viewer)
    html = page(client.get(CHANGELIST))
    assert 'value="sync_now"' not in html
    act(client, "sync_now", integration)
    assert OrmQ.objects.count() == 0


# --- Sync now ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_sync_now_queues_at_once_and_says_so(admin_client, integration):
    html = page(act(admin_client, "sync_now", integration))
    assert "Sync of “fleet” queued" in html
    assert OrmQ.objects.count() == 1
    html = page(act(admin_client, "sync_now", integration))
    assert "already has a sync queued or running; nothing added" in html
    assert OrmQ.objects.count() == 1


@pytest.mark.django_db
def test_sync_now_runs_the_sync(admin_client, run_tasks_inline, golioth, golioth_integration):
    now = timezone.now()
    golioth.seed_fleet(2, 3, start=now - timedelta(minutes=4), end=now - timedelta(minutes=1))
    act(admin_client, "sync_now", golioth_integration)
    assert TelemetryRecord.objects.count() == 6
    run = ActivityLog.objects.get(activity_type="sync_import")
    assert (run.trigger, run.status) == ("admin", "success")


# --- Test connection -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_test_connection_reports_success(admin_client, golioth, golioth_integration):
    html = page(act(admin_client, "test_connection", golioth_integration))
    assert "Connected to project sim-project" in html
    entry = ActivityLog.objects.get(activity_type="test_connection")
    assert (entry.status, entry.trigger) == ("success", "admin")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"api_key": "wrong-key-abcd"}, "API key"),
        ({"project_id": "someone-elses-project"}, "project"),
        ({"base_url": "http://127.0.0.1:9"}, "127.0.0.1:9"),
    ],
)
def test_test_connection_names_the_problem(
    admin_client, golioth, make_integration, fields, problem
):
    fields = {"api_key": golioth.api_key, "base_url": golioth.base_url, **fields}
    integration = make_integration(**fields)
    html = page(act(admin_client, "test_connection", integration))
    assert "connection test failed" in html
    entry = ActivityLog.objects.get(activity_type="test_connection")
    assert entry.status == "failed"
    assert problem in entry.error_message
    assert problem in html
    assert "wrong-key-abcd" not in html and "wrong-key-abcd" not in entry.error_message


# --- Backfill… -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_backfill_action_opens_the_form_for_one_integration(admin_client, make_integration):
    one, two = make_integration("one"), make_integration("two")
    response = act(admin_client, "backfill", one, follow=False)
    assert response.status_code == 302
    assert response.url == f"{CHANGELIST}{one.pk}/backfill/"
    html = page(admin_client.get(response.url))
    assert "Backfill one" in html and 'name="since"' in html and 'name="until"' in html
    html = page(act(admin_client, "backfill", one, two))
    assert "Select one integration to backfill" in html


@pytest.mark.django_db
def test_backfill_form_queues_a_backfill_that_keeps_the_cursor(
    admin_client, run_tasks_inline, golioth, golioth_integration
):
    now = timezone.now()
    golioth.seed_fleet(2, 4, start=now - timedelta(days=3), end=now - timedelta(days=2))
    cursor = now - timedelta(minutes=3)
    DeviceIntegration.objects.filter(pk=golioth_integration.pk).update(sync_cursor=cursor)
    since = timezone.localtime(now - timedelta(days=4))
    until = timezone.localtime(now - timedelta(days=1))
    response = admin_client.post(
        f"{CHANGELIST}{golioth_integration.pk}/backfill/",
        {"since": f"{since:%Y-%m-%d %H:%M:%S}", "until": f"{until:%Y-%m-%d %H:%M:%S}"},
        follow=True,
    )
    assert "Backfill of “sim-fleet”" in page(response)
    assert TelemetryRecord.objects.filter(source="backfill").count() == 8
    golioth_integration.refresh_from_db()
    assert golioth_integration.sync_cursor == cursor


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("since", "until", "error"),
    [
        ("2026-03-02 00:00", "2026-03-01 00:00", "The end must be after the start."),
        ("2026-03-01 00:00", "2999-01-01 00:00", "The end cannot be in the future."),
        ("yesterday", "2026-03-01 00:00", "&#x27;yesterday&#x27; is not a time. Use an ISO 8601"),
        ("2h", "3h", "The end must be after the start."),
    ],
)
def test_backfill_form_refuses_bad_ranges(admin_client, integration, since, until, error):
    response = admin_client.post(
        f"{CHANGELIST}{integration.pk}/backfill/", {"since": since, "until": until}
    )
    assert response.status_code == 200
    assert error in page(response)
    assert OrmQ.objects.count() == 0


@pytest.mark.django_db
def test_backfill_form_takes_ages_like_runsync(admin_client, integration):
    """Issue 12: the form refused `1h` where the command takes ages."""
    before = timezone.now()
    response = admin_client.post(
        f"{CHANGELIST}{integration.pk}/backfill/", {"since": "1h", "until": "now"}, follow=True
    )
    assert "Backfill of" in page(response)
    (queued,) = OrmQ.objects.all()
    kwargs = queued.task["kwargs"]
    assert abs(kwargs["since"] - (before - timedelta(hours=1))) < timedelta(seconds=30)
    assert abs(kwargs["until"] - before) < timedelta(seconds=30)


@pytest.mark.django_db
def test_backfill_form_says_when_a_run_is_in_flight(admin_client, integration):
    DeviceIntegration.objects.filter(pk=integration.pk).update(queued_at=timezone.now())
    response = admin_client.post(
        f"{CHANGELIST}{integration.pk}/backfill/",
        {"since": "2026-03-01 00:00", "until": "2026-03-02 00:00"},
    )
    assert "queued or running; try again" in page(response)


# --- Pause / Resume ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_pause_and_resume(admin_client, make_integration):
    integration = make_integration(consecutive_failures=5, status="error")
    html = page(act(admin_client, "pause", integration))
    assert "Paused: fleet (<a href=" in html
    integration.refresh_from_db()
    assert integration.status == "paused"
    html = page(act(admin_client, "resume", integration))
    assert "Resumed: fleet (<a href=" in html
    integration.refresh_from_db()
    assert (integration.status, integration.consecutive_failures) == ("active", 0)
    messages = ActivityLog.objects.filter(activity_type="status_changed").order_by("id")
    assert [m.message for m in messages] == [
        "Paused by admin (was error).",
        "Resumed by admin (was paused).",
    ]


# --- health columns ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_changelist_shows_health_runs_readings_and_errors(admin_client, make_integration):
    now = timezone.now()
    healthy = make_integration("healthy", last_sync_at=now - timedelta(minutes=1),
                               last_sync_status="success")  # fmt: skip
    make_integration("broken", last_sync_status="failed", consecutive_failures=2,
                     sync_error="Golioth rejected the API key (401)\ndetails")  # fmt: skip
    make_integration("resting", status="paused")
    for kind, inserted in [("webhook_received", 7), ("sync_import", 5), ("backfill", 100)]:
        ActivityLog.objects.log(
            healthy, activity_type=kind, status="success", readings_inserted=inserted,
            started_at=now - timedelta(hours=1),
        )  # fmt: skip
    ActivityLog.objects.log(
        healthy, activity_type="sync_import", status="success", readings_inserted=1000,
        started_at=now - timedelta(hours=25),
    )  # fmt: skip
    html = page(admin_client.get(CHANGELIST))
    assert "push 7 / pull 105" in html
    # Health is a coloured word; why is on hover, so it does not repeat Last run's text.
    assert 'title="2 failed runs in a row: Golioth rejected the API key (401)"' in html
    assert 'title="Paused by staff."' in html
    assert "minute ago (success)" in html
    assert "Last run 1 minute ago" not in html.split('title="')[0]
    for state, colour in (("ok", "#2e7d32"), ("failing", "#c62828"), ("paused", "#616161")):
        assert re.search(f"background: {colour};[^>]*>{state}</span>", html)


@pytest.mark.django_db
def test_changelist_queries_do_not_grow_with_integrations(admin_client, make_integration):
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(CHANGELIST).status_code == 200
        return len(queries)

    for n in range(2):
        make_integration(f"first-{n}")
    few = count_queries()
    for n in range(10):
        make_integration(f"more-{n}")
    assert count_queries() == few


# --- Verify completeness -------------------------------------------------------------------------


@pytest.mark.django_db
def test_verify_completeness_queues_a_reconcile_and_says_so(admin_client, integration):
    html = page(act(admin_client, "verify_completeness", integration))
    assert "Reconcile of “fleet” queued" in html
    assert OrmQ.objects.count() == 1
    html = page(act(admin_client, "verify_completeness", integration))
    assert "already has a run queued or running; nothing added" in html
    assert OrmQ.objects.count() == 1


@pytest.mark.django_db
def test_verify_completeness_runs_and_the_page_shows_verified_through(
    admin_client, run_tasks_inline, golioth, golioth_integration
):
    from integrations.pull.sync import sync_integration

    now = timezone.now()
    golioth.seed_fleet(3, 4, start=now - timedelta(hours=3), end=now - timedelta(minutes=2))
    golioth_integration.settings = {
        "maxRequestsPerSecond": 1000,
        "backfillFrom": (now - timedelta(hours=3)).isoformat(),
    }
    golioth_integration.save()
    sync_integration(golioth_integration)
    late = golioth.devices[0]
    golioth.add_reading(late.id, now - timedelta(hours=2), {"buffered": 1})

    act(admin_client, "verify_completeness", golioth_integration)

    entry = ActivityLog.objects.get(activity_type="reconcile")
    assert (entry.trigger, entry.status, entry.readings_inserted) == ("admin", "success", 1)
    golioth_integration.refresh_from_db()
    assert golioth_integration.verified_through == entry.window_end
    html = page(admin_client.get(f"{CHANGELIST}{golioth_integration.pk}/change/"))
    assert "Verified complete through" in html
    assert f"{entry.window_end:%Y-%m-%d %H:%M:%S}" in html
    assert "1 recovered" in html
    listing = page(admin_client.get(CHANGELIST))
    assert f"{entry.window_end:%Y-%m-%d %H:%M:%S} UTC" in listing
