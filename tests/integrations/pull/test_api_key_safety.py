"""The API key goes only to the host it was saved for (issue 9, defects 1 and 2)."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command

from integrations.models import ActivityLog, DeviceIntegration
from tests.integrations.admin.test_admin import change_data, change_url, form_errors
from tests.integrations.golioth.conftest import StubServer, make_stub_server  # noqa: F401

CHANGELIST = "/admin/integrations/deviceintegration/"


@pytest.fixture
def editor(client, db):
    """Staff with only view and change permission on integrations."""
    user = User.objects.create_user("editor", password="pw-12345-xyz", is_staff=True)
    for codename in ("view_deviceintegration", "change_deviceintegration"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    return client


@pytest.fixture
def thief(make_stub_server) -> StubServer:  # noqa: F811 (the imported fixture)
    """A host the attacker runs: answers like Golioth and keeps every request."""
    stub = make_stub_server()
    stub.body = json.dumps({"data": {"id": "p", "name": "stolen"}}).encode()
    return stub


def keys_received(stub: StubServer) -> list[str]:
    return [headers.get("x-api-key", "") for _, _, headers, _ in stub.received]


def test_changing_base_url_without_the_key_is_refused(editor, golioth, golioth_integration, thief):
    data = change_data(golioth_integration, base_url=thief.url)

    response = editor.post(change_url(golioth_integration), data)

    assert response.status_code == 200
    assert "enter the API key again" in form_errors(response)["api_key"][0]
    golioth_integration.refresh_from_db()
    assert golioth_integration.base_url == golioth.base_url
    editor.post(
        CHANGELIST, {"action": "test_connection", "_selected_action": [golioth_integration.pk]}
    )
    assert keys_received(thief) == []


def test_changing_project_without_the_key_is_refused(editor, golioth_integration):
    data = change_data(golioth_integration, project_id="someone-elses-project")

    response = editor.post(change_url(golioth_integration), data)

    assert "enter the API key again" in form_errors(response)["api_key"][0]
    golioth_integration.refresh_from_db()
    assert golioth_integration.project_id == "sim-project"


def test_changing_base_url_with_the_key_is_saved(editor, golioth_integration, thief):
    data = change_data(golioth_integration, base_url=thief.url, api_key="their-own-key-1234")

    response = editor.post(change_url(golioth_integration), data)

    assert response.status_code == 302, form_errors(response)
    golioth_integration.refresh_from_db()
    assert golioth_integration.get_api_key() == "their-own-key-1234"


def test_other_changes_keep_the_key(editor, golioth, golioth_integration):
    data = change_data(golioth_integration, sync_interval_seconds="900")

    response = editor.post(change_url(golioth_integration), data)

    assert response.status_code == 302, form_errors(response)
    golioth_integration.refresh_from_db()
    assert golioth_integration.get_api_key() == golioth.api_key


def test_api_host_outside_the_allow_list_is_refused_at_save(editor, golioth_integration):
    data = change_data(golioth_integration, base_url="https://evil.example", api_key="k" * 24)

    response = editor.post(change_url(golioth_integration), data)

    message = form_errors(response)["base_url"][0]
    assert "host evil.example is not an allowed Golioth API host" in message
    assert "GSYNC_API_HOSTS" in message


def test_private_api_host_is_refused_at_save(editor, golioth_integration, settings):
    settings.GSYNC_API_HOSTS = ["api.golioth.io", "169.254.169.254"]
    settings.GSYNC_ALLOW_PRIVATE_API_HOSTS = False
    data = change_data(golioth_integration, base_url="http://169.254.169.254", api_key="k" * 24)

    response = editor.post(change_url(golioth_integration), data)

    assert "link-local" in form_errors(response)["base_url"][0]


def test_disallowed_host_in_the_database_gets_no_key(
    admin_client, golioth_integration, thief, settings
):
    """A URL that reached the database some other way: the client refuses it before any call."""
    DeviceIntegration.objects.filter(pk=golioth_integration.pk).update(base_url=thief.url)
    settings.GSYNC_API_HOSTS = ["api.golioth.io"]

    response = admin_client.post(
        CHANGELIST,
        {"action": "test_connection", "_selected_action": [golioth_integration.pk]},
        follow=True,
    )

    assert keys_received(thief) == []
    assert "is not an allowed Golioth API host" in response.content.decode()
    entry = ActivityLog.objects.get(activity_type="test_connection")
    assert entry.status == "failed" and "GSYNC_API_HOSTS" in entry.error_message


def test_remote_project_name_is_bounded_and_plain(admin_client, make_integration, thief):
    thief.body = json.dumps({"data": {"name": "\x1b[31mX\u202e" + "n" * 5000 + "\n\tend"}}).encode()
    integration = make_integration(base_url=thief.url, api_key="k" * 24)

    response = admin_client.post(
        CHANGELIST, {"action": "test_connection", "_selected_action": [integration.pk]}, follow=True
    )

    entry = ActivityLog.objects.get(activity_type="test_connection")
    assert entry.status == "success"
    assert len(entry.message) < 200
    assert "\x1b" not in entry.message and "\u202e" not in entry.message
    assert "\n" not in entry.message
    assert "n" * 200 not in response.content.decode()


def test_remote_error_message_is_bounded_and_plain(make_integration, thief):
    from integrations.pull.connection import test_connection

    thief.status = 400
    thief.body = json.dumps({"code": 3, "message": "\x00\x1b[2J" + "m" * 10_000}).encode()
    integration = make_integration(base_url=thief.url, api_key="k" * 24)

    entry = test_connection(integration)

    assert entry.status == "failed" and "Golioth said" in entry.error_message
    assert "\x00" not in entry.error_message and "\x1b" not in entry.error_message
    assert len(entry.error_message) < 500


def test_integration_update_base_url_needs_the_key(golioth_integration, thief, monkeypatch):
    monkeypatch.delenv("GOLIOTH_API_KEY", raising=False)

    with pytest.raises(CommandError) as info:
        call_command(
            "integration", "update", "sim-fleet", "--base-url", thief.url, stdout=io.StringIO()
        )

    assert "enter the API key again" in str(info.value)
    golioth_integration.refresh_from_db()
    assert golioth_integration.base_url != thief.url


def test_integration_update_base_url_with_the_key(golioth_integration, thief, monkeypatch):
    monkeypatch.setenv("GOLIOTH_API_KEY", "new-key-for-new-host")

    call_command(
        "integration",
        "update",
        "sim-fleet",
        "--base-url",
        thief.url,
        "--api-key-env",
        stdout=io.StringIO(),
    )

    golioth_integration.refresh_from_db()
    assert golioth_integration.base_url == thief.url
    assert golioth_integration.get_api_key() == "new-key-for-new-host"


def test_integration_update_refuses_a_host_outside_the_allow_list(golioth_integration, monkeypatch):
    monkeypatch.setenv("GOLIOTH_API_KEY", "new-key-for-new-host")

    with pytest.raises(CommandError, match="not an allowed Golioth API host"):
        call_command(
            "integration",
            "update",
            "sim-fleet",
            "--base-url",
            "https://evil.example",
            "--api-key-env",
            stdout=io.StringIO(),
        )
