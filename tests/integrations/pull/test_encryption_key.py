"""A missing or malformed GSYNC_ENCRYPTION_KEY fails cleanly everywhere (issue 9, defect 6)."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from integrations.models import ActivityLog, DeviceIntegration

BROKEN_KEYS = pytest.mark.parametrize("keys", [[], ["not-a-fernet-key"]], ids=["missing", "bad"])
CHANGELIST = "/admin/integrations/deviceintegration/"


@BROKEN_KEYS
def test_runsync_without_a_usable_key_fails_cleanly(golioth, golioth_integration, settings, keys):
    settings.GSYNC_ENCRYPTION_KEYS = keys
    out = io.StringIO()

    with pytest.raises(CommandError) as info:
        call_command("runsync", "sim-fleet", "--force", stdout=out)

    assert info.value.returncode == 1
    golioth_integration.refresh_from_db()
    assert golioth_integration.locked_until is None and golioth_integration.locked_by == ""
    assert golioth_integration.last_sync_status == "failed"
    entry = ActivityLog.objects.get(activity_type="sync_import")
    assert entry.status == "failed"
    assert "GSYNC_ENCRYPTION_KEY" in entry.error_message
    assert "\n" not in entry.error_message and "Traceback" not in entry.error_message
    assert "GSYNC_ENCRYPTION_KEY" in out.getvalue()
    assert golioth.calls == 0


@BROKEN_KEYS
def test_test_connection_without_a_usable_key_is_an_admin_error(
    admin_client, golioth_integration, settings, keys
):
    settings.GSYNC_ENCRYPTION_KEYS = keys

    response = admin_client.post(
        CHANGELIST,
        {"action": "test_connection", "_selected_action": [golioth_integration.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert "connection test failed" in response.content.decode()
    assert "GSYNC_ENCRYPTION_KEY" in response.content.decode()
    entry = ActivityLog.objects.get(activity_type="test_connection")
    assert entry.status == "failed"


@BROKEN_KEYS
def test_integration_create_without_a_usable_key_is_one_line(db, settings, monkeypatch, keys):
    settings.GSYNC_ENCRYPTION_KEYS = keys
    monkeypatch.setenv("GOLIOTH_API_KEY", "cli-key-0123-abcd-efgh-ijkl")

    with pytest.raises(CommandError) as info:
        call_command("integration", "create", "new", "--project-id", "p", stdout=io.StringIO())

    assert info.value.returncode == 1
    assert "GSYNC_ENCRYPTION_KEY" in str(info.value) and "\n" not in str(info.value)
    assert not DeviceIntegration.objects.exists()


@BROKEN_KEYS
def test_admin_save_without_a_usable_key_is_a_field_error(admin_client, settings, keys):
    from tests.integrations.admin.test_admin import ADD_URL, form_data, form_errors

    settings.GSYNC_ENCRYPTION_KEYS = keys

    response = admin_client.post(ADD_URL, form_data())

    assert response.status_code == 200
    assert "GSYNC_ENCRYPTION_KEY" in form_errors(response)["api_key"][0]
    assert not DeviceIntegration.objects.exists()


def test_rotate_encryption_key_reencrypts_every_api_key(make_integration, settings):
    from cryptography.fernet import Fernet

    old_key, new_key = settings.GSYNC_ENCRYPTION_KEYS[0], Fernet.generate_key().decode()
    first = make_integration("one", api_key="first-api-key-000000000")
    make_integration("two", api_key="second-api-key-11111111")
    DeviceIntegration.objects.create(name="keyless", project_id="p")
    settings.GSYNC_ENCRYPTION_KEYS = [new_key, old_key]
    out = io.StringIO()

    call_command("rotate_encryption_key", stdout=out)

    assert "Re-encrypted 2 API keys" in out.getvalue()
    settings.GSYNC_ENCRYPTION_KEYS = [new_key]  # the old key can go now
    assert DeviceIntegration.objects.get(pk=first.pk).get_api_key() == "first-api-key-000000000"
    assert DeviceIntegration.objects.get(name="two").get_api_key() == "second-api-key-11111111"


def test_rotate_encryption_key_names_a_key_it_cannot_read(make_integration, settings):
    from cryptography.fernet import Fernet

    make_integration("lost", api_key="lost-api-key-0000000000")
    settings.GSYNC_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(CommandError, match="'lost'.*enter its API key again"):
        call_command("rotate_encryption_key", stdout=io.StringIO())
