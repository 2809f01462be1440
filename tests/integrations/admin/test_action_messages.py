"""Issue 12, polish: action messages link to the entry they wrote, Test connection is bounded,
and the API key box says it must be typed again after an error."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from integrations.models import ActivityLog, DeviceIntegration, WebhookDelivery

CHANGELIST = "/admin/integrations/deviceintegration/"
ADD_URL = f"{CHANGELIST}add/"
ENTRY_URL = "/admin/integrations/activitylog/{}/change/"
TYPED_KEY = "typed-golioth-key-7f2e"


@pytest.fixture
def silent_host() -> Iterator[str]:
    """A local port that accepts connections (the kernel completes the handshake) and never
    answers a byte: a host that hangs, not one that refuses."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def act(client, action: str, *integrations: DeviceIntegration):
    data = {"action": action, "_selected_action": [i.pk for i in integrations]}
    return client.post(CHANGELIST, data, follow=True)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def entry_link(entry: ActivityLog) -> str:
    return f'<a href="{ENTRY_URL.format(entry.pk)}">activity entry #{entry.pk}</a>'


# --- Test connection, bounded --------------------------------------------------------------------


@pytest.mark.django_db
def test_test_connection_to_a_silent_host_returns_within_seconds(
    admin_client, make_integration, silent_host, settings
):
    """It ran with the full HTTP timeout and every retry (~12 s unreachable, minutes silent)."""
    settings.GSYNC_HTTP_TIMEOUT = 15.0
    settings.GSYNC_HTTP_MAX_RETRIES = 5
    integration = make_integration(base_url=silent_host)
    host = silent_host.removeprefix("http://")

    started = time.monotonic()
    response = act(admin_client, "test_connection", integration)
    waited = time.monotonic() - started

    assert waited < 8, f"the page waited {waited:.1f} s"  # a hang bound, kept generous
    entry = ActivityLog.objects.get(activity_type="test_connection")
    assert entry.status == "failed"
    assert entry.error_message.startswith(f"Could not reach {host} within 3 s: ")
    assert "did not answer" in entry.error_message
    (message,) = messages_of(response)
    assert f"connection test failed: Could not reach {host} within 3 s" in message
    assert entry_link(entry) in message


@pytest.mark.django_db
def test_test_connection_success_links_to_its_entry(admin_client, golioth, golioth_integration):
    (message,) = messages_of(act(admin_client, "test_connection", golioth_integration))

    entry = ActivityLog.objects.get(activity_type="test_connection")
    assert "Connected to project sim-project" in message
    assert entry_link(entry) in message


# --- messages that link to their entry -----------------------------------------------------------


@pytest.mark.django_db
def test_sync_now_links_to_the_run_it_queued(
    admin_client, run_tasks_inline, golioth, golioth_integration
):
    (message,) = messages_of(act(admin_client, "sync_now", golioth_integration))

    run = ActivityLog.objects.get(activity_type="sync_import")
    assert f"Result: {entry_link(run)}." in message


@pytest.mark.django_db
def test_sync_now_without_a_worker_links_to_the_integrations_log(admin_client, integration):
    """No worker has started the run yet, so there is no entry: the message says so and links
    to the activity log filtered to the integration, which will show it."""
    response = act(admin_client, "sync_now", integration)

    (message,) = messages_of(response)
    log_url = f"/admin/integrations/activitylog/?integration__id__exact={integration.pk}"
    assert "Its entry appears when a worker starts the run" in message
    assert f'<a href="{log_url}">the activity log of “fleet”</a>' in message
    assert f'href="{log_url}"' in response.content.decode()
    listing = admin_client.get(log_url)
    assert listing.status_code == 200


@pytest.mark.django_db
def test_verify_completeness_links_to_the_reconcile(
    admin_client, run_tasks_inline, golioth, golioth_integration
):
    DeviceIntegration.objects.filter(pk=golioth_integration.pk).update(
        sync_cursor=timezone.now() - timedelta(minutes=1)
    )

    (message,) = messages_of(act(admin_client, "verify_completeness", golioth_integration))

    entry = ActivityLog.objects.get(activity_type="reconcile")
    assert f"Result: {entry_link(entry)}." in message


@pytest.mark.django_db
def test_backfill_links_to_the_backfill(
    admin_client, run_tasks_inline, golioth, golioth_integration
):
    response = admin_client.post(
        f"{CHANGELIST}{golioth_integration.pk}/backfill/",
        {"since": "2h", "until": "now"},
        follow=True,
    )

    (message,) = messages_of(response)
    entry = ActivityLog.objects.get(activity_type="backfill")
    assert f"Result: {entry_link(entry)}." in message


@pytest.mark.django_db
def test_pause_and_resume_link_to_their_entries(admin_client, make_integration):
    one, two = make_integration("one"), make_integration("two")

    (paused,) = messages_of(act(admin_client, "pause", one, two))
    (resumed,) = messages_of(act(admin_client, "resume", one))

    entries = list(ActivityLog.objects.filter(activity_type="status_changed").order_by("pk"))
    assert len(entries) == 3
    assert paused == (f"Paused: one ({entry_link(entries[0])}), two ({entry_link(entries[1])}).")
    assert resumed == f"Resumed: one ({entry_link(entries[2])})."


@pytest.mark.django_db
def test_message_escapes_the_integration_name(admin_client, make_integration):
    make_integration("<b>bold</b>")

    integration = DeviceIntegration.objects.get()
    response = act(admin_client, "pause", integration)

    assert "<b>bold</b>" not in response.content.decode()
    assert "&lt;b&gt;bold&lt;/b&gt;" in response.content.decode()


@pytest.mark.django_db
def test_reprocess_links_to_the_entry_it_wrote(admin_client, integration):
    WebhookDelivery.objects.create(
        integration=integration,
        headers={"Ce-Source": "dev-1", "Ce-Type": "io.golioth.data.v1/.s/sensor"},
        body=b'{"temp": 1}',
        content_type="application/json",
        outcome=WebhookDelivery.Outcome.FAILED,
        error="KeyError: 'x'",
    )

    selected = list(WebhookDelivery.objects.values_list("pk", flat=True))
    response = admin_client.post(
        "/admin/integrations/webhookdelivery/",
        {"action": "reprocess", "_selected_action": selected},
        follow=True,
    )

    (message,) = messages_of(response)
    entry = ActivityLog.objects.get(activity_type="webhook_reprocessed")
    assert message.startswith("Re-processed 1 deliveries")
    assert f"See {entry_link(entry)}." in message


# --- the API key after a validation error --------------------------------------------------------


def add_form(**overrides) -> dict:
    data = {
        "name": "berlin-fleet",
        "status": "active",
        "project_id": "berlin-project",
        "base_url": "https://api.golioth.io",
        "api_key": TYPED_KEY,
        "sync_enabled": "on",
        "sync_interval_seconds": "600",
        "overlap_seconds": "300",
        "settle_seconds": "30",
        "max_requests_per_second": "5",
        "max_consecutive_failures": "5",
        "time_tolerance_seconds": "120",
        "offline_after_minutes": "60",
        "reconcile_lookback_hours": "48",
        "reconcile_interval_minutes": "60",
        "filter_tag_match": "all",
    }
    data.update(overrides)
    return data


def key_help(response) -> str:
    html = response.content.decode()
    found = re.search(r'id="id_api_key_helptext">(.*?)</div>\s*</div>', html, re.S)
    assert found, "no help under the API key box"
    return found.group(1)


@pytest.mark.django_db
def test_api_key_box_asks_for_the_key_again_after_an_error(admin_client):
    response = admin_client.post(ADD_URL, add_form(sync_interval_seconds="1"))

    assert response.status_code == 200
    assert "sync_interval_seconds" in response.context["adminform"].form.errors
    assert "Re-enter the API key: it is not shown again for safety." in key_help(response)
    assert TYPED_KEY not in response.content.decode()
    assert not DeviceIntegration.objects.exists()


@pytest.mark.django_db
def test_api_key_box_says_nothing_more_when_no_key_was_typed(admin_client, make_integration):
    integration = make_integration("kept-key")
    data = add_form(name="kept-key", api_key="", sync_interval_seconds="1")

    response = admin_client.post(f"{CHANGELIST}{integration.pk}/change/", data)

    assert response.status_code == 200
    assert "Re-enter the API key" not in response.content.decode()
    assert "Leave blank to keep it" in key_help(response)


@pytest.mark.django_db
def test_api_key_box_is_quiet_on_a_fresh_form(admin_client):
    response = admin_client.get(ADD_URL)

    assert "Re-enter the API key" not in response.content.decode()
