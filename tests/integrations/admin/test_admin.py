from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from integrations.models import ActivityLog, DeviceIntegration, WebhookDelivery

ADD_URL = "/admin/integrations/deviceintegration/add/"
LIST_URL = "/admin/integrations/deviceintegration/"
API_KEY = "golioth-key-secret-9f3c"


def change_url(integration: DeviceIntegration) -> str:
    return f"/admin/integrations/deviceintegration/{integration.pk}/change/"


def form_data(**overrides) -> dict:
    """What a browser posts for a valid new integration (unticked checkboxes are left out)."""
    data = {
        "name": "berlin-fleet",
        "status": "active",
        "project_id": "berlin-project",
        "base_url": "https://api.golioth.io",
        "api_key": API_KEY,
        "sync_enabled": "on",
        "sync_interval_seconds": "600",
        "overlap_seconds": "300",
        "settle_seconds": "30",
        "max_requests_per_second": "5",
        "backfill_from": "",
        "max_consecutive_failures": "5",
        "time_tolerance_seconds": "120",
        "offline_after_minutes": "60",
        "reconcile_lookback_hours": "48",
        "reconcile_interval_minutes": "60",
        "window_enabled": "on",
        "window_start": "22:00",
        "window_end": "06:00",
        "window_timezone": "Europe/Berlin",
        "window_days": ["1", "2", "3", "4", "5"],
        "filter_tags": "outdoor, berlin\nv2",
        "filter_tag_match": "any",
        "filter_device_ids": "",
        "filter_name_pattern": "sensor-*",
        "filter_cohort_ids": "cohort-a",
        "filter_blueprint_ids": "",
        "filter_enabled_only": "on",
        "filter_reported_within_hours": "48",
        "webhook_creates_devices": "on",
        "webhook_queued": "on",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def change_data(integration: DeviceIntegration, **overrides) -> dict:
    """The change form as the admin renders it for `integration`, re-posted with `overrides`."""
    from integrations.management.commands.integration import current_data

    data = {}
    for name, value in current_data(integration).items():
        if value is True:
            data[name] = "on"
        elif value in (False, None):
            continue
        elif isinstance(value, list):
            data[name] = [str(v) for v in value] if name == "window_days" else ", ".join(value)
        else:
            data[name] = str(value)
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def form_errors(response) -> dict:
    return response.context["adminform"].form.errors


def test_admin_create_integration_stores_documented_settings(admin_client):
    response = admin_client.post(ADD_URL, form_data())

    assert response.status_code == 302, form_errors(response)
    integration = DeviceIntegration.objects.get(name="berlin-fleet")
    assert integration.settings["syncEnabled"] is True
    assert integration.settings["syncIntervalSeconds"] == 600
    assert integration.settings["maxRequestsPerSecond"] == 5.0
    assert integration.settings["timeWindow"] == {
        "start": "22:00",
        "end": "06:00",
        "timezone": "Europe/Berlin",
        "days": [1, 2, 3, 4, 5],
    }
    assert integration.settings["deviceFilter"] == {
        "tags": ["outdoor", "berlin", "v2"],
        "tagMatch": "any",
        "deviceIds": [],
        "namePattern": "sensor-*",
        "cohortIds": ["cohort-a"],
        "blueprintIds": [],
        "enabledOnly": True,
        "reportedWithinHours": 48,
    }
    assert integration.get_api_key() == API_KEY
    entry = ActivityLog.objects.get(integration=integration)
    assert (entry.activity_type, entry.trigger) == ("settings_changed", "admin")


def test_admin_add_page_offers_time_zones_and_weekdays(admin_client):
    page = admin_client.get(ADD_URL).content.decode()

    assert '<option value="Europe/Berlin">' in page
    assert 'list="gsync-timezones"' in page
    assert 'name="window_days" value="0"' in page and "Sunday" in page


def test_admin_create_without_window_or_filter_stores_nulls(admin_client):
    data = form_data(
        window_enabled=None,
        filter_tags="",
        filter_name_pattern="",
        filter_cohort_ids="",
        filter_enabled_only=None,
        filter_reported_within_hours="",
    )

    response = admin_client.post(ADD_URL, data)

    assert response.status_code == 302, form_errors(response)
    settings = DeviceIntegration.objects.get().settings
    assert settings["timeWindow"] is None
    assert settings["deviceFilter"] is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sync_interval_seconds", "10", "Must be between 60 and 604800 (got 10)."),
        ("window_end", "25:00", "'25:00' is not a time of day; use HH:MM between 00:00 and 23:59."),
        ("window_timezone", "Mars/Base", "'Mars/Base' is not a known time zone"),
        ("filter_name_pattern", "sensor-[", "'sensor-[' has an unclosed '['"),
        ("filter_reported_within_hours", "0", "Must be a whole number of hours, 1 or more."),
        ("window_days", [], "Must name at least one weekday"),
        ("overlap_seconds", "abc", "Enter a whole number."),
        ("base_url", "not a url", "Enter a valid URL."),
    ],
)
def test_admin_create_invalid_value_gets_field_error_and_saves_nothing(
    admin_client, field, value, message
):
    response = admin_client.post(ADD_URL, form_data(**{field: value}))

    assert response.status_code == 200
    errors = form_errors(response)
    assert list(errors) == [field]
    assert errors[field][0].startswith(message)
    assert message.split("(")[0].replace("'", "&#x27;") in response.content.decode()
    assert not DeviceIntegration.objects.exists()
    assert not ActivityLog.objects.exists()


def test_admin_create_requires_api_key(admin_client):
    response = admin_client.post(ADD_URL, form_data(api_key=""))

    assert "api_key" in form_errors(response)
    assert not DeviceIntegration.objects.exists()


def test_admin_change_invalid_value_keeps_stored_settings(admin_client, make_integration):
    integration = make_integration(settings={"syncIntervalSeconds": 900})

    response = admin_client.post(
        change_url(integration), change_data(integration, sync_interval_seconds="10")
    )

    assert response.status_code == 200
    integration.refresh_from_db()
    assert integration.settings == {"syncIntervalSeconds": 900}


def test_admin_change_keeps_unknown_settings_keys(admin_client, make_integration):
    integration = make_integration(settings={"legacyColour": "blue", "syncIntervalSeconds": 900})

    response = admin_client.post(
        change_url(integration), change_data(integration, sync_interval_seconds="1200")
    )

    assert response.status_code == 302, form_errors(response)
    integration.refresh_from_db()
    assert integration.settings["legacyColour"] == "blue"
    assert integration.settings["syncIntervalSeconds"] == 1200


def test_admin_api_key_is_write_only(admin_client, make_integration):
    integration = make_integration(api_key=API_KEY)

    page = admin_client.get(change_url(integration)).content.decode()

    assert API_KEY not in page
    assert integration.api_key_encrypted not in page
    assert "••••9f3c" in page


def test_admin_blank_api_key_keeps_current(admin_client, make_integration):
    integration = make_integration(api_key=API_KEY)

    response = admin_client.post(change_url(integration), change_data(integration, api_key=""))

    assert response.status_code == 302, form_errors(response)
    integration.refresh_from_db()
    assert integration.get_api_key() == API_KEY


def test_admin_new_api_key_replaces_it_and_logs_name_only(admin_client, make_integration):
    integration = make_integration(api_key=API_KEY)

    admin_client.post(change_url(integration), change_data(integration, api_key="new-key-7777"))

    integration.refresh_from_db()
    assert integration.get_api_key() == "new-key-7777"
    entry = ActivityLog.objects.get(activity_type="settings_changed")
    assert entry.metadata["changed"] == ["api_key"]
    logged = json.dumps(entry.metadata) + entry.message
    assert "new-key-7777" not in logged and integration.api_key_encrypted not in logged


def test_admin_change_logs_changed_keys_with_values(admin_client, make_integration):
    integration = make_integration(settings={"syncIntervalSeconds": 900})

    admin_client.post(
        change_url(integration), change_data(integration, sync_interval_seconds="300")
    )

    entry = ActivityLog.objects.get(activity_type="settings_changed")
    assert entry.metadata["changed"] == ["syncIntervalSeconds"]
    assert entry.metadata["values"]["syncIntervalSeconds"] == {"from": 900, "to": 300}
    assert entry.message == "Changed: syncIntervalSeconds."


def test_admin_change_page_shows_webhook_url_and_pipeline(admin_client, integration):
    page = admin_client.get(change_url(integration)).content.decode()

    assert f'value="{integration.webhook_url}"' in page
    assert "destination:" in page and "webhook" in page
    assert "Sync state" in page


def test_admin_generated_secret_shown_once_and_rotates(admin_client, integration):
    url = change_url(integration)
    response = admin_client.post(
        url,
        change_data(integration, webhook_enabled="on", generate_webhook_secret="on"),
        follow=True,
    )
    first = _shown_secret(response)

    integration.refresh_from_db()
    second_response = admin_client.post(
        url, change_data(integration, generate_webhook_secret="on"), follow=True
    )
    second = _shown_secret(second_response)

    integration.refresh_from_db()
    assert integration.webhook_enabled
    assert integration.check_webhook_secret(first) and integration.check_webhook_secret(second)
    page = admin_client.get(url).content.decode()
    assert first not in page and second not in page
    assert f"••••{second[-4:]}" in page


def test_admin_remove_secret_leaves_the_other_active(admin_client, integration):
    old = integration.add_webhook_secret()
    new = integration.add_webhook_secret()
    integration.webhook_enabled = True
    integration.save()
    old_id = integration.webhook_secrets[0]["id"]

    response = admin_client.post(
        change_url(integration), change_data(integration, remove_webhook_secrets=[old_id])
    )

    assert response.status_code == 302, form_errors(response)
    integration.refresh_from_db()
    assert not integration.check_webhook_secret(old)
    assert integration.check_webhook_secret(new)


def test_admin_webhook_enabled_needs_a_secret(admin_client):
    response = admin_client.post(ADD_URL, form_data(webhook_enabled="on"))

    assert "webhook_enabled" in form_errors(response)
    assert not DeviceIntegration.objects.exists()


def _shown_secret(response) -> str:
    """The secret on the page the save answered with (never in a message)."""
    assert response.status_code == 200 and not response.redirect_chain
    secrets = re.findall(r'<code id="gsync-new-secret">([^<]+)</code>', response.content.decode())
    assert len(secrets) == 1, form_errors(response)
    return secrets[0]


# --- access --------------------------------------------------------------------------------------


def test_admin_non_staff_user_is_sent_to_login(client, integration):
    user = User.objects.create_user("viewer", password="pw-12345-abc")
    client.force_login(user)

    response = client.get(LIST_URL)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_admin_anonymous_is_sent_to_login(client, integration):
    response = client.get(change_url(integration))

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_admin_staff_without_permission_gets_403(client, integration):
    user = User.objects.create_user("staff", password="pw-12345-abc", is_staff=True)
    client.force_login(user)

    assert client.get(LIST_URL).status_code == 403
    assert client.get("/admin/integrations/activitylog/").status_code == 403


def test_admin_activity_log_is_read_only_even_for_superuser(admin_client, integration):
    entry = ActivityLog.objects.log(
        integration, activity_type="sync_import", status="success", metadata={"pages": 3}
    )

    assert admin_client.get("/admin/integrations/activitylog/add/").status_code == 403
    page = admin_client.get(f"/admin/integrations/activitylog/{entry.pk}/change/")
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert "&quot;pages&quot;: 3" in page.content.decode()


def test_admin_staff_with_view_permission_reads_activity(client, integration):
    user = User.objects.create_user("ops", password="pw-12345-abc", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_activitylog"))
    client.force_login(user)
    ActivityLog.objects.log(
        integration, activity_type="sync_import", status="success", message="pulled 12 readings"
    )

    response = client.get("/admin/integrations/activitylog/")

    assert response.status_code == 200
    assert "pulled 12 readings" in response.content.decode()


# --- changelists: a constant number of queries ------------------------------------------------


def count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


def make_activity(integrations, n: int) -> None:
    for i in range(n):
        ActivityLog.objects.log(
            integrations[i % len(integrations)],
            activity_type="sync_import",
            status="success",
            readings_inserted=i,
            response_time_ms=1500,
        )


def make_deliveries(integrations, n: int) -> None:
    for i in range(n):
        WebhookDelivery.objects.create(
            integration=integrations[i % len(integrations)],
            body=b'{"temp": 1}',
            headers={"Content-Type": "application/json"},
            outcome="processed",
        )


def test_admin_integration_changelist_queries_do_not_grow(admin_client, make_integration):
    for i in range(5):
        make_integration(f"fleet-{i}")
    small = count_queries(admin_client, LIST_URL)
    for i in range(5, 30):
        make_integration(f"fleet-{i}")

    assert count_queries(admin_client, LIST_URL) == small


@pytest.mark.parametrize(
    ("url", "make_rows"),
    [
        ("/admin/integrations/activitylog/", make_activity),
        ("/admin/integrations/webhookdelivery/", make_deliveries),
    ],
)
def test_admin_log_changelist_queries_do_not_grow(admin_client, make_integration, url, make_rows):
    integrations = [make_integration(f"fleet-{i}") for i in range(3)]
    make_rows(integrations, 5)
    small = count_queries(admin_client, url)
    make_rows(integrations, 25)

    assert count_queries(admin_client, url) == small


def test_admin_activity_changelist_shows_counts_and_duration(admin_client, integration):
    ActivityLog.objects.log(
        integration,
        activity_type="sync_import",
        status="success",
        readings_inserted=4321,
        api_calls=17,
        response_time_ms=2500,
        message="pulled",
    )

    page = admin_client.get("/admin/integrations/activitylog/").content.decode()

    assert "4,321\xa0new" in page and "17\xa0calls" in page and "2.5 s" in page
    assert 'title="devices seen 0, readings inserted 4,321' in page  # in full on hover
    assert "gsync-badge" in page and ">Success<" in page  # the status in its colour


def test_admin_activity_shows_deliveries_for_webhook_entries(admin_client, integration):
    webhook = ActivityLog.objects.log(
        integration, activity_type="webhook_received", status="success", deliveries=23
    )
    ActivityLog.objects.log(integration, activity_type="sync_import", status="success", api_calls=7)

    page = admin_client.get("/admin/integrations/activitylog/").content.decode()
    entry = admin_client.get(f"/admin/integrations/activitylog/{webhook.pk}/change/")

    assert "23\xa0deliveries" in page and "7\xa0calls" in page
    assert "23\xa0calls" not in page
    shown = entry.content.decode()
    assert "Deliveries:" in shown and "23" in shown
    assert "Api calls:" not in shown and "Devices seen:" not in shown


def test_admin_activity_changelist_filters_and_date_drilldown(admin_client, make_integration):
    one, two = make_integration("one"), make_integration("two")
    ActivityLog.objects.log(one, activity_type="sync_import", status="failed", message="boom-1")
    ActivityLog.objects.log(two, activity_type="backfill", status="success", message="fine-2")
    year = timezone.now().year

    page = admin_client.get(
        f"/admin/integrations/activitylog/?integration__id__exact={one.pk}&status__exact=failed"
        f"&started_at__year={year}"
    ).content.decode()

    assert "boom-1" in page and "fine-2" not in page
    search = admin_client.get("/admin/integrations/activitylog/?q=fine").content.decode()
    assert "fine-2" in search and "boom-1" not in search


# --- webhook deliveries --------------------------------------------------------------------------


def test_admin_delivery_reprocess_action_is_registered(admin_client, integration):
    make_deliveries([integration], 1)

    response = admin_client.get("/admin/integrations/webhookdelivery/")

    choices = [value for value, _ in response.context["action_form"].fields["action"].choices]
    assert "reprocess" in choices


def test_admin_delivery_detail_redacts_headers_and_pretty_prints_body(admin_client, integration):
    delivery = WebhookDelivery.objects.create(
        integration=integration,
        body=json.dumps({"temp": 21.5, "unit": "C"}).encode(),
        headers={"Content-Type": "application/json", "X-Api-Key": "leaked-value-123"},
        content_type="application/json",
        outcome="failed",
        error="KeyError: 'temp'",
        traceback="Traceback (most recent call last): ...",
    )

    page = admin_client.get(f"/admin/integrations/webhookdelivery/{delivery.pk}/change/")

    html = page.content.decode()
    assert "leaked-value-123" not in html
    assert "[redacted]" in html
    assert "&quot;temp&quot;: 21.5" in html
    assert "Traceback (most recent call last)" in html


def test_admin_delivery_binary_body_shows_as_hex(admin_client, integration):
    delivery = WebhookDelivery.objects.create(
        integration=integration,
        body=b"\xff\xfe\x00garbage",
        content_type="text/plain",
        outcome="failed",
    )

    html = admin_client.get(f"/admin/integrations/webhookdelivery/{delivery.pk}/change/")

    assert "fffe0067617262616765" in html.content.decode()


def test_admin_mirrored_paths_field_saves_patterns_and_refuses_overlaps(admin_client):
    response = admin_client.post(ADD_URL, form_data(mirrored_paths="/sensor\nenv/*"))
    assert response.status_code == 302, form_errors(response)
    assert DeviceIntegration.objects.get().settings["mirroredPaths"] == ["/sensor", "/env/*"]

    response = admin_client.post(ADD_URL, form_data(name="b", mirrored_paths="/a/*b"))

    assert "a * may only end a pattern" in form_errors(response)["mirrored_paths"][0]


def test_new_integration_form_starts_with_golioths_api_url(admin_client):
    """Issue 12: the API base URL started blank, yet is required."""
    html = admin_client.get("/admin/integrations/deviceintegration/add/").content.decode()
    assert 'name="base_url" value="https://api.golioth.io"' in html
