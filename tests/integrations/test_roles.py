"""What each kind of staff may see and do in the admin (issue 9)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User

from tests.integrations.test_admin import change_url


@pytest.fixture
def view_only(client, db):
    user = User.objects.create_user("looker", password="pw-12345-xyz", is_staff=True)
    for model in ("deviceintegration", "activitylog", "webhookdelivery"):
        user.user_permissions.add(Permission.objects.get(codename=f"view_{model}"))
    client.force_login(user)
    return client


def test_view_only_staff_see_the_integration_page(view_only, make_integration):
    integration = make_integration(api_key="view-only-key-0123456789")
    integration.add_webhook_secret("a-webhook-secret-for-view-only")
    integration.webhook_enabled = True
    integration.save()

    response = view_only.get(change_url(integration))

    assert response.status_code == 200
    page = response.content.decode()
    assert integration.webhook_url in page
    assert "view-only-key-0123456789" not in page and "a-webhook-secret-for-view-only" not in page
