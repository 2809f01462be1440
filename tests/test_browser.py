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
from integrations.pull.sync import sync_integration
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


# --- the operator's walk at 1280 px (issue 12, "Done when") --------------------------------------

LAPTOP = {"width": 1280, "height": 900}
# How far the page, and the changelist table inside its box, reach past the window's width.
OVERFLOW_JS = """() => {
  const doc = document.documentElement;
  const found = {page: doc.scrollWidth - window.innerWidth};
  const table = document.querySelector('#result_list');
  if (table) {
    const box = table.closest('.results') || table.parentElement;
    found.table = table.scrollWidth - box.clientWidth;
  }
  return found;
}"""


# The visible text of the page's content, JSON and bodies (raw data, shown as stored) and help
# texts (examples of what to type) left out.
CONTENT_TEXT_JS = """() => {
  const content = document.querySelector('#content').cloneNode(true);
  content.querySelectorAll('pre, textarea, select, .help, .helptext').forEach(e => e.remove());
  return content.innerText;
}"""
# Times shown any other way than gsync.formats' 2026-03-01 12:00:05.
OTHER_TIME_FORMATS = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d"  # ISO's T
    r"|\d\d:\d\d:\d\d(?:\.\d+|[+-]\d\d:\d\d)"  # microseconds or an offset
    r"|\d{4}-\d\d-\d\d \d\d:\d\d(?!:\d\d)"  # no seconds
    r"|\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.? \d{1,2}\b"  # month names
    r"|\d [ap]\.m\."
)


def other_time_formats(page) -> list[str]:
    """Each time shown another way, with the words before it."""
    text = " ".join(page.evaluate(CONTENT_TEXT_JS).split())
    return [text[max(0, m.start() - 60) : m.end()] for m in OTHER_TIME_FORMATS.finditer(text)]


def assert_fits(page, screen: str) -> None:
    overflow = page.evaluate(OVERFLOW_JS)
    assert overflow["page"] <= 0, f"{screen} scrolls sideways by {overflow['page']} px"
    assert overflow.get("table", 0) <= 0, f"{screen}: its table is {overflow['table']} px too wide"


def shoot(page, name: str) -> None:
    page.screenshot(path=str(OUTPUT / f"walk-{name}.png"), full_page=True)


def seeded(golioth, integration, *, devices: int, readings: int) -> DeviceIntegration:
    """The simulator holds `readings` per device over the last 12 hours; the integration's
    first run reads them all."""
    now = timezone.now()
    start, end = now - timedelta(hours=12), now - timedelta(minutes=2)
    golioth.seed_fleet(devices, readings, start=start, end=end)
    integration.settings = {
        **integration.settings,
        "backfillFrom": (now - timedelta(days=1)).isoformat(),
    }
    integration.save()
    return integration


def log_in(page, live_server) -> None:
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.get_by_role("button", name="Log in").click()


def test_operator_walk_at_1280_px(
    browser_page, live_server, admin_user, golioth, golioth_integration, monkeypatch
):
    """Login, dashboard, integration page, Sync now, the run's entry, a device, its readings
    exported as CSV: each screen at 1280 px without sideways scrolling, each saved."""
    monkeypatch.setattr(Conf, "SYNC", True)
    page = browser_page
    page.set_viewport_size(LAPTOP)
    integration = seeded(golioth, golioth_integration, devices=6, readings=20)

    log_in(page, live_server)
    assert "gsync at a glance" in page.content()
    assert_fits(page, "dashboard")
    shoot(page, "1-dashboard")

    page.goto(f"{live_server.url}/admin/integrations/deviceintegration/{integration.pk}/change/")
    assert_fits(page, "integration page")
    shoot(page, "2-integration")
    page.locator("#gsync-panel").get_by_role("button", name="Sync now").click()
    message = page.locator("ul.messagelist")
    assert "Sync of “sim-fleet” queued" in message.inner_text()
    assert_fits(page, "integration page after Sync now")
    shoot(page, "3-sync-now")

    entry = ActivityLog.objects.get(integration=integration, activity_type="sync_import")
    message.get_by_role("link").first.click()
    # Each click that leads to another page waits for it to load (wait_for_url's default).
    page.wait_for_url(f"**/admin/integrations/activitylog/{entry.pk}/change/")
    assert "Success" in page.locator("#content").inner_text()
    assert_fits(page, "the run's entry")
    shoot(page, "4-run-entry")

    page.goto(f"{live_server.url}/admin/telemetry/device/")
    assert_fits(page, "devices")
    page.locator("#result_list tbody tr th a").first.click()
    page.wait_for_url("**/admin/telemetry/device/*/change/")
    assert page.locator("table.gsync-readings tbody tr").count() == 20
    assert_fits(page, "device page")
    shoot(page, "5-device")
    device_name = page.locator("#id_name, .field-name .readonly").first.inner_text()

    page.get_by_role("link", name="All readings of this device").click()
    page.wait_for_url("**/admin/telemetry/telemetryrecord/?device=*")
    assert_fits(page, "the device's readings")
    shoot(page, "6-device-readings")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    exported = download.value.path().read_text()
    rows = exported.splitlines()[1:]
    assert rows and len(rows) == TelemetryRecord.objects.filter(device__name=device_name).count()
    assert all(f",{device_name}," in row for row in rows)


def admin_screens(live_server) -> list[tuple[str, str]]:
    """(name, URL) of the dashboard, every changelist, and a change page of each model that has
    a row (an add page where staff may add)."""
    from django.contrib import admin

    screens = [("dashboard", f"{live_server.url}/admin/")]
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        base = f"{live_server.url}/admin/{opts.app_label}/{opts.model_name}/"
        screens.append((f"{opts.model_name} list", base))
        first = model._default_manager.order_by("pk").first()
        if first is not None:
            screens.append((f"{opts.model_name} page", f"{base}{first.pk}/change/"))
        elif model_admin.has_add_permission(_StaffRequest()):
            screens.append((f"{opts.model_name} add", f"{base}add/"))
    return screens


class _StaffRequest:
    class user:  # noqa: N801 - a stand-in for request.user
        is_active = is_staff = is_superuser = True

        @staticmethod
        def has_perm(perm: str) -> bool:
            return True


def test_every_admin_screen_fits_1280_px_and_shows_one_time_format(
    browser_page, live_server, admin_user, golioth, golioth_integration, client, monkeypatch
):
    monkeypatch.setattr(Conf, "SYNC", True)
    page = browser_page
    page.set_viewport_size(LAPTOP)
    integration = seeded(golioth, golioth_integration, devices=4, readings=10)
    integration.webhook_enabled = True
    integration.add_webhook_secret("whsec-browser-0123456789")
    integration.save()
    sync_integration(integration)
    long_error = "Golioth answered 503 Service Unavailable: " + "upstream timed out " * 20
    ActivityLog.objects.log(
        integration, activity_type="sync_import", status="failed", error_message=long_error
    )
    client.post(
        integration.webhook_path,
        b'{"temp": 1}',
        content_type="application/json",
        headers={"Authorization": "whsec-browser-0123456789", "Ce-Source": "browser-device-0001"},
    )

    log_in(page, live_server)
    too_wide, formats = [], []
    for name, url in admin_screens(live_server):
        page.goto(url)
        overflow = page.evaluate(OVERFLOW_JS)
        if overflow["page"] > 0 or overflow.get("table", 0) > 0:
            too_wide.append((name, overflow))
            page.screenshot(path=str(OUTPUT / f"too-wide-{name.replace(' ', '-')}.png"))
        if found := other_time_formats(page):
            formats.append((name, found))
    assert not too_wide, "\n".join(f"{name}: {overflow}" for name, overflow in too_wide)
    assert not formats, "\n".join(f"{name}: {found}" for name, found in formats)
