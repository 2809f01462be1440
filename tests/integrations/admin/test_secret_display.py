"""New webhook secrets and the API key hint (issue 9, safeguards)."""

from __future__ import annotations

import re

from django.contrib.messages.storage.cookie import CookieStorage
from django.http import HttpRequest

from integrations.models import DeviceIntegration
from tests.integrations.admin.test_admin import ADD_URL, change_data, change_url, form_data

SECRET_ON_PAGE = re.compile(r'<code id="gsync-new-secret">([^<]+)</code>')


def cookie_messages(response) -> list[str]:
    morsel = response.cookies.get("messages")
    if morsel is None or not morsel.value:
        return []
    return [str(m) for m in CookieStorage(HttpRequest())._decode(morsel.value) or []]


def test_new_webhook_secret_is_on_the_saving_page_not_in_the_messages_cookie(
    admin_client, integration
):
    response = admin_client.post(
        change_url(integration),
        change_data(integration, webhook_enabled="on", generate_webhook_secret="on"),
    )

    assert response.status_code == 200
    (secret,) = SECRET_ON_PAGE.findall(response.content.decode())
    integration.refresh_from_db()
    assert integration.check_webhook_secret(secret)
    assert "no-store" in response["Cache-Control"]
    assert not any(secret in message for message in cookie_messages(response))
    later = admin_client.get(change_url(integration))
    assert secret not in later.content.decode()
    assert not any(secret in message for message in cookie_messages(later))


def test_new_integration_with_a_secret_shows_it_once(admin_client):
    response = admin_client.post(
        ADD_URL, form_data(webhook_enabled="on", generate_webhook_secret="on")
    )

    (secret,) = SECRET_ON_PAGE.findall(response.content.decode())
    assert DeviceIntegration.objects.get().check_webhook_secret(secret)
    assert not any(secret in message for message in cookie_messages(response))


def test_short_api_key_shows_no_characters(admin_client, make_integration):
    integration = make_integration(api_key="short-key-9876")

    page = admin_client.get(change_url(integration)).content.decode()

    assert "9876" not in page and "9876" not in integration.api_key_display
    assert integration.api_key_display == "•••• (set)"


def test_long_api_key_shows_its_last_four(admin_client, make_integration):
    integration = make_integration(api_key="a-long-golioth-api-key-4242")

    page = admin_client.get(change_url(integration)).content.decode()

    assert "••••4242" in page and "key-4242" not in page


def test_short_webhook_secret_hint_shows_no_characters(integration):
    integration.add_webhook_secret("tiny-secret-55")

    assert integration.webhook_secrets[0]["hint"] == ""
