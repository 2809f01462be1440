from __future__ import annotations

from django.core import checks
from django.core.management import call_command

from integrations.checks import check_encryption_key, check_webhook_secrets

VALID_KEY = "ZmRzYWZkc2FmZHNhZmRzYWZkc2FmZHNhZmRzYWZkc2E="


def ids(messages) -> list[str]:
    return [m.id for m in messages]


def test_checks_are_registered_with_django():
    registered = checks.registry.registry.get_checks(include_deployment_checks=True)
    assert check_encryption_key in registered
    assert check_webhook_secrets in registered


def test_check_encryption_key_missing_is_an_error(settings):
    settings.GSYNC_ENCRYPTION_KEYS = []
    assert ids(check_encryption_key()) == ["gsync.E002"]


def test_check_encryption_key_invalid_names_position_not_value(settings):
    settings.GSYNC_ENCRYPTION_KEYS = [VALID_KEY, "not-a-fernet-key"]

    messages = check_encryption_key()

    assert ids(messages) == ["gsync.E003"]
    assert "entry 2 of 2" in messages[0].msg
    assert "not-a-fernet-key" not in messages[0].msg + (messages[0].hint or "")


def test_check_encryption_key_valid(settings):
    settings.GSYNC_ENCRYPTION_KEYS = [VALID_KEY]
    assert check_encryption_key() == []


def test_check_webhook_secrets_warns_about_enabled_without_secret(make_integration):
    make_integration("open", webhook_enabled=True)
    guarded = make_integration("guarded", webhook_enabled=True)
    guarded.add_webhook_secret()
    guarded.save()
    make_integration("off")

    messages = check_webhook_secrets(databases=["default"])

    assert ids(messages) == ["gsync.W001"]
    assert "'open'" in messages[0].msg


def test_check_webhook_secrets_skipped_without_database(make_integration):
    make_integration("open", webhook_enabled=True)
    assert check_webhook_secrets(databases=None) == []


def test_check_command_reports_the_webhook_warning(make_integration, capsys):
    make_integration("open", webhook_enabled=True)

    call_command("check", "--database", "default")

    assert "gsync.W001" in capsys.readouterr().err


def test_check_encryption_key_problems_are_errors(settings):
    for keys in ([], ["not-a-fernet-key"]):
        settings.GSYNC_ENCRYPTION_KEYS = keys
        assert [m.level for m in check_encryption_key()] == [checks.ERROR]
