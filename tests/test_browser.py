"""The admin in headless Chromium, as staff use it: log in, add an integration, test its
connection, sync it now against the Golioth simulator, see the readings and the dashboard.

Needs Debian's chromium (`make test` installs it); screenshots go to test-output/.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connections
from django.utils import timezone
from django_q.conf import Conf

from integrations.models import ActivityLog, DeviceIntegration
from telemetry.models import TelemetryRecord

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


@pytest.fixture
def browser_page(monkeypatch):
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed: `make test` installs it (as root), or apt-get it")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # between page actions are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1700, "height": 1000})
        page.set_default_timeout(15_000)
        yield page
        browser.close()
        # ORM calls made inside Playwright's context got their own connection: close it, or
        # PostgreSQL refuses to drop the test database at the end of the session.
        connections.close_all()


def run_action(page, live_server, name: str, action: str) -> str:
    page.goto(f"{live_server.url}/admin/integrations/deviceintegration/")
    page.get_by_role("row").filter(has_text=name).get_by_role("checkbox").check()
    page.select_option("select[name=action]", action)
    page.get_by_role("button", name="Go").click()
    return page.locator("ul.messagelist").inner_text()


def test_admin_flow_in_chromium(browser_page, live_server, admin_user, golioth, monkeypatch):
    # The "Sync now" task runs inside the request (django-q2's sync mode): no worker in this test.
    monkeypatch.setattr(Conf, "SYNC", True)
    page = browser_page
    now = timezone.now()
    golioth.seed_fleet(6, 20, start=now - timedelta(hours=12), end=now - timedelta(minutes=2))
    truth = len(golioth.readings())

    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.get_by_role("button", name="Log in").click()
    assert "gsync at a glance" in page.content()

    page.goto(f"{live_server.url}/admin/integrations/deviceintegration/add/")
    page.fill("#id_name", "Warehouse sensors")
    page.fill("#id_project_id", golioth.project_id)
    page.fill("#id_base_url", golioth.base_url)
    page.fill("#id_api_key", golioth.api_key)
    page.fill("#id_backfill_from", f"{now - timedelta(days=1):%Y-%m-%d %H:%M:%S}")
    page.get_by_role("button", name="Save", exact=True).click()
    assert "was added successfully" in page.locator("ul.messagelist").inner_text()
    integration = DeviceIntegration.objects.get(name="Warehouse sensors")
    assert golioth.api_key not in page.content()

    message = run_action(page, live_server, "Warehouse sensors", "test_connection")
    assert f"Connected to project {golioth.project_id}" in message

    message = run_action(page, live_server, "Warehouse sensors", "sync_now")
    assert "Sync of “Warehouse sensors” queued" in message
    assert TelemetryRecord.objects.filter(integration=integration).count() == truth
    page.screenshot(path=str(OUTPUT / "integrations.png"), full_page=True)
    row = page.get_by_role("row").filter(has_text="Warehouse sensors").inner_text()
    assert re.search(r"\bok\b", row) and f"pull {truth:,}" in row

    page.goto(f"{live_server.url}/admin/telemetry/telemetryrecord/")
    assert page.locator("#result_list tbody tr").count() == min(truth, 100)
    assert "Sync (pull)" in page.locator("#result_list").inner_text()

    page.goto(f"{live_server.url}/admin/")
    dashboard = page.locator("#gsync-dashboard")
    assert "100%" in dashboard.inner_text()  # success rate of the one run
    assert f"{truth} readings stored in the last 24 hours" in dashboard.inner_text()
    assert dashboard.locator("svg rect").count() >= 1
    dashboard.screenshot(path=str(OUTPUT / "dashboard.png"))
    page.screenshot(path=str(OUTPUT / "admin-index.png"), full_page=True)
    entries = ActivityLog.objects.filter(integration=integration)
    assert {"test_connection", "sync_import"} <= set(
        entries.values_list("activity_type", flat=True)
    )
    assert os.path.getsize(OUTPUT / "dashboard.png") > 5_000
