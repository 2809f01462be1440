"""What each kind of staff may see and do in the admin (issue 9): the two groups the migration
makes ("gsync operators", "gsync viewers") and staff with no permission at all, page by page and
action by action, including POSTs a browser would never offer them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone
from django_q.models import OrmQ

from integrations.models import ActivityLog, DeviceIntegration, WebhookDelivery
from telemetry.models import Device, TelemetryRecord
from tests.integrations.admin.test_admin import change_data, change_url

ADMIN = "/admin/"
INTEGRATIONS = "/admin/integrations/deviceintegration/"
ACTIVITY = "/admin/integrations/activitylog/"
DELIVERIES = "/admin/integrations/webhookdelivery/"
DEVICES = "/admin/telemetry/device/"
READINGS = "/admin/telemetry/telemetryrecord/"
WEBHOOK_SECRET = "role-test-webhook-secret-0123456789"
ROLES = ["operator", "viewer", "staff"]


@pytest.fixture
def world(golioth, golioth_integration, make_device):
    """One of everything an admin page shows, with secrets that must never appear."""
    integration = golioth_integration
    integration.add_webhook_secret(WEBHOOK_SECRET)
    integration.webhook_enabled = True
    integration.save()
    device = make_device(integration, "d1")
    entry = ActivityLog.objects.log(
        integration, activity_type="sync_import", status="success", message="1 reading"
    )
    reading = TelemetryRecord.objects.create(
        device=device,
        integration=integration,
        telemetry={"temp": 21},
        device_timestamp=timezone.now() - timedelta(minutes=1),
        source="sync",
        activity=entry,
        dedup_key="00000000-0000-0000-0000-000000000001",
    )
    delivery = WebhookDelivery.objects.create(
        integration=integration,
        headers={"Ce-Source": "d1", "Ce-Type": "io.golioth.data.v1/.s/sensor"},
        body=b'{"temp": 22}',
        content_type="application/json",
        outcome=WebhookDelivery.Outcome.FAILED,
        error="KeyError: 'x'",
        attempts=1,
    )
    return {
        "integration": integration,
        "entry": entry,
        "device": device,
        "reading": reading,
        "delivery": delivery,
        "api_key": golioth.api_key,
    }


@pytest.fixture
def login(client, db):
    def as_role(role: str):
        user = User.objects.create_user(role, password="pw-12345-xyz", is_staff=True)
        group = {"operator": "gsync operators", "viewer": "gsync viewers"}.get(role)
        if group:
            user.groups.add(Group.objects.get(name=group))
        client.force_login(user)
        return client

    return as_role


def pages(world) -> dict[str, str]:
    pk = {name: obj.pk for name, obj in world.items() if hasattr(obj, "pk")}
    return {
        "integration list": INTEGRATIONS,
        "integration page": change_url(world["integration"]),
        "integration add": f"{INTEGRATIONS}add/",
        "backfill form": f"{INTEGRATIONS}{pk['integration']}/backfill/",
        "integration delete": f"{INTEGRATIONS}{pk['integration']}/delete/",
        "activity list": ACTIVITY,
        "activity entry": f"{ACTIVITY}{pk['entry']}/change/",
        "delivery list": DELIVERIES,
        "delivery page": f"{DELIVERIES}{pk['delivery']}/change/",
        "device list": DEVICES,
        "device page": f"{DEVICES}{pk['device']}/change/",
        "device delete": f"{DEVICES}{pk['device']}/delete/",
        "reading list": READINGS,
        "reading page": f"{READINGS}{pk['reading']}/change/",
        "task schedules": "/admin/django_q/schedule/",
        "failed tasks": "/admin/django_q/failure/",
        "users": "/admin/auth/user/",
    }


VISIBLE = {
    "operator": {
        "integration list", "integration page", "integration add", "backfill form",
        "activity list", "activity entry", "delivery list", "delivery page", "device list",
        "device page", "reading list", "reading page",
    },
    "viewer": {
        "integration list", "integration page", "activity list", "activity entry",
        "delivery list", "delivery page", "device list", "device page", "reading list",
        "reading page",
    },
    "staff": set(),
}  # fmt: skip


def database_state() -> dict[str, list[dict]]:
    """Every row gsync and django-q2 keep: what a POST must leave alone."""
    models = [
        *apps.get_app_config("integrations").get_models(),
        *apps.get_app_config("telemetry").get_models(),
        *apps.get_app_config("django_q").get_models(),
    ]
    return {m._meta.label: sorted(map(repr, m.objects.values())) for m in models}


# --- pages ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_each_role_sees_its_pages_and_no_secret(login, world, role):
    client = login(role)
    assert client.get(ADMIN).status_code == 200
    for name, url in pages(world).items():
        response = client.get(url)
        expected = 200 if name in VISIBLE[role] else 403
        assert response.status_code == expected, f"{role} GET {name}: {response.status_code}"
        page = response.content.decode()
        assert world["api_key"] not in page and WEBHOOK_SECRET not in page, name


@pytest.mark.parametrize("role", ["viewer", "staff"])
def test_integration_page_is_read_only_without_change_permission(login, world, role):
    page = login(role).get(change_url(world["integration"])).content.decode()
    if role == "viewer":
        assert world["integration"].webhook_url in page
        assert 'name="api_key"' not in page and 'name="generate_webhook_secret"' not in page
        assert "1 active, added" in page and "••••" + WEBHOOK_SECRET[-4:] not in page


def test_view_only_staff_see_the_integration_page(client, make_integration):
    """The bare view permission (no group) renders too: it used to be a 500."""
    user = User.objects.create_user("looker", password="pw-12345-xyz", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_deviceintegration"))
    client.force_login(user)
    integration = make_integration(api_key="view-only-key-0123456789")
    integration.add_webhook_secret("a-webhook-secret-for-view-only")
    integration.webhook_enabled = True
    integration.save()

    response = client.get(change_url(integration))

    assert response.status_code == 200
    page = response.content.decode()
    assert integration.webhook_url in page
    assert "view-only-key-0123456789" not in page and "a-webhook-secret-for-view-only" not in page


# --- actions -------------------------------------------------------------------------------------


def action_posts(world) -> list[tuple[str, str, dict]]:
    """Every admin action, and every form POST, as a crafted request."""
    integration, delivery = world["integration"], world["delivery"]

    def act(url: str, action: str, *objs) -> tuple[str, str, dict]:
        return (action, url, {"action": action, "_selected_action": [o.pk for o in objs]})

    return [
        act(INTEGRATIONS, "sync_now", integration),
        act(INTEGRATIONS, "test_connection", integration),
        act(INTEGRATIONS, "backfill", integration),
        act(INTEGRATIONS, "verify_completeness", integration),
        act(INTEGRATIONS, "pause", integration),
        act(INTEGRATIONS, "resume", integration),
        act(INTEGRATIONS, "delete_selected", integration),
        act(DELIVERIES, "reprocess", delivery),
        act(DELIVERIES, "delete_selected", delivery),
        act(ACTIVITY, "delete_selected", world["entry"]),
        act(DEVICES, "delete_selected", world["device"]),
        act(READINGS, "delete_selected", world["reading"]),
        act("/admin/django_q/failure/", "resubmit_task"),
        (
            "edit",
            change_url(integration),
            change_data(integration, sync_interval_seconds="900", generate_webhook_secret="on"),
        ),
        (
            "backfill form",
            f"{INTEGRATIONS}{integration.pk}/backfill/",
            {"since": "2026-01-01 00:00", "until": "2026-01-02 00:00"},
        ),
        ("add", f"{INTEGRATIONS}add/", {"name": "x", "project_id": "p"}),
        ("delete integration", f"{INTEGRATIONS}{integration.pk}/delete/", {"post": "yes"}),
        ("delete device", f"{DEVICES}{world['device'].pk}/delete/", {"post": "yes"}),
    ]


@pytest.mark.parametrize("role", ["viewer", "staff"])
def test_posts_without_permission_change_nothing(login, world, role):
    client = login(role)
    before = database_state()
    for name, url, data in action_posts(world):
        response = client.post(url, data)
        assert response.status_code in (200, 302, 403), f"{role} POST {name}"
        assert database_state() == before, f"{role} POST {name} changed the database"
    assert WebhookDelivery.objects.get().attempts == 1


def test_operator_runs_every_operating_action(login, world):
    client = login("operator")
    integration, delivery = world["integration"], world["delivery"]
    posts = {name: (url, data) for name, url, data in action_posts(world)}

    def post(name: str):
        url, data = posts[name]
        return client.post(url, data, follow=True)

    post("sync_now")
    assert OrmQ.objects.count() == 1
    post("test_connection")
    assert ActivityLog.objects.filter(activity_type="test_connection", status="success").exists()
    assert post("backfill").redirect_chain[0][0].endswith("/backfill/")
    assert post("verify_completeness").status_code == 200
    post("pause")
    assert DeviceIntegration.objects.get().status == "paused"
    post("resume")
    assert DeviceIntegration.objects.get().status == "active"
    post("reprocess")
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    assert post("edit").status_code == 200  # the page that shows the new secret
    integration.refresh_from_db()
    assert integration.settings["syncIntervalSeconds"] == 900


def test_operator_deletes_nothing(login, world):
    client = login("operator")
    before = {m: m.objects.count() for m in (DeviceIntegration, Device, TelemetryRecord)}
    for name, url, data in action_posts(world):
        if "delete" in name or name == "resubmit_task":
            client.post(url, data)
    assert {m: m.objects.count() for m in before} == before
    assert WebhookDelivery.objects.count() == ActivityLog.objects.count() == 1


def test_groups_hold_what_the_readme_says(db):
    def codenames(group: str) -> set[str]:
        return set(Group.objects.get(name=group).permissions.values_list("codename", flat=True))

    viewers, operators = codenames("gsync viewers"), codenames("gsync operators")
    assert all(c.startswith("view_") for c in viewers)
    assert viewers < operators
    assert operators - viewers == {
        "add_deviceintegration",
        "change_deviceintegration",
        "run_sync",
        "reprocess_webhookdelivery",
    }


def test_change_permission_alone_runs_nothing(client, world):
    """Editing is not running: Sync now, Test connection and Backfill need `run_sync`."""
    user = User.objects.create_user("editor", password="pw-12345-xyz", is_staff=True)
    for codename in ("view_deviceintegration", "change_deviceintegration"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    posts = {name: (url, data) for name, url, data in action_posts(world)}

    for name in ("sync_now", "test_connection", "backfill", "backfill form"):
        client.post(*posts[name])

    assert OrmQ.objects.count() == 0
    assert not ActivityLog.objects.filter(activity_type="test_connection").exists()
    assert client.get(posts["backfill form"][0]).status_code == 403


# --- filters through secret columns ---------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES[:2])
@pytest.mark.parametrize(
    "lookup",
    ["api_key_encrypted__startswith=g", "webhook_secrets__icontains=role", "webhook_token__gt=a"],
)
def test_no_one_filters_the_list_through_a_secret(login, world, role, lookup):
    """A changelist filter on a secret column answers yes/no per guess: byte by byte, the
    ciphertext or the secret leaks. Django allows any lookup on the model's own columns."""
    response = login(role).get(f"{INTEGRATIONS}?{lookup}")

    assert response.status_code == 400
