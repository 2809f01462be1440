"""Golioth's LightDB Stream retention horizon (issue 8 §3): every place that warns."""

from __future__ import annotations

import io
from datetime import timedelta
from html import unescape

import pytest
from django.core import checks
from django.core.management import call_command
from django.utils import timezone

from integrations.admin.dashboard import integration_health
from integrations.checks import check_stream_retention
from integrations.pull.retention import reaches_past_retention, retention_warnings
from telemetry.models import TelemetryRecord

HORIZON_WORDS = "before Golioth's LightDB Stream retention horizon"


@pytest.fixture
def now():
    return timezone.now()


def test_reaches_past_retention_only_beyond_the_setting(now, settings):
    assert reaches_past_retention(now - timedelta(days=29), now=now) is None

    warning = reaches_past_retention(now - timedelta(days=31), now=now, what="The backfill")

    assert warning.startswith("The backfill starts ")
    assert HORIZON_WORDS in warning and "30 days, GSYNC_STREAM_RETENTION_DAYS" in warning
    settings.GSYNC_STREAM_RETENTION_DAYS = 90
    assert reaches_past_retention(now - timedelta(days=31), now=now) is None


def test_retention_warnings_cursor_minus_overlap(make_integration, now):
    cursor = now - timedelta(days=30) + timedelta(seconds=100)
    integration = make_integration(sync_cursor=cursor, settings={"overlapSeconds": 300})

    warnings = retention_warnings(integration, now=now)

    assert len(warnings) == 1
    assert warnings[0].startswith("The next pull (cursor minus overlap) starts")
    integration.settings = {"overlapSeconds": 60}
    assert retention_warnings(integration, now=now) == []


def test_retention_warnings_backfill_from_only_before_the_first_run(make_integration, now):
    old = (now - timedelta(days=45)).isoformat()
    integration = make_integration(settings={"backfillFrom": old})

    assert retention_warnings(integration, now=now)[0].startswith("The first pull (backfillFrom)")
    integration.sync_cursor = now - timedelta(minutes=5)
    assert retention_warnings(integration, now=now) == []


def test_retention_warnings_reconcile_lookback(make_integration, now):
    integration = make_integration(settings={"reconcileLookbackHours": 31 * 24})

    warnings = retention_warnings(integration, now=now)

    assert [w.split(" starts")[0] for w in warnings] == [
        "The reconcile window (reconcileLookbackHours)"
    ]
    assert retention_warnings(make_integration("b"), now=now) == []  # 48 h by default


def test_health_warns_when_a_window_reaches_past_retention(make_integration, now):
    integration = make_integration(
        last_sync_at=now - timedelta(minutes=1),
        sync_cursor=now - timedelta(days=40),
    )

    health = integration_health(integration, now=now)

    assert health.state == "warning"
    assert HORIZON_WORDS in health.reason


def test_admin_list_and_page_show_the_retention_warning(admin_client, make_integration, now):
    integration = make_integration(settings={"reconcileLookbackHours": 60 * 24})

    listing = unescape(admin_client.get("/admin/integrations/deviceintegration/").content.decode())
    url = f"/admin/integrations/deviceintegration/{integration.pk}/change/"
    page = unescape(admin_client.get(url).content.decode())

    assert "warning" in listing and HORIZON_WORDS in listing
    assert "The reconcile window (reconcileLookbackHours) starts" in page


def test_system_check_warns_per_integration(make_integration, now):
    make_integration("old-fleet", settings={"reconcileLookbackHours": 40 * 24})
    make_integration("fine-fleet")

    found = [m for m in checks.run_checks(databases=["default"]) if m.id == "gsync.W010"]

    assert [m.obj for m in found] == ["old-fleet"]
    assert found[0].level == checks.WARNING
    assert HORIZON_WORDS in found[0].msg
    assert check_stream_retention(databases=None) == []  # no database asked: nothing read


def test_runsync_since_beyond_retention_warns_first_and_still_runs(golioth_integration, golioth):
    out, err = io.StringIO(), io.StringIO()
    golioth.add_device(id="dev0", name="PUMP-0")
    golioth.add_reading("dev0", timezone.now() - timedelta(days=1), {"n": 1})

    call_command("runsync", "sim-fleet", "--since", "40d", stdout=out, stderr=err)

    assert "--since" in err.getvalue() and HORIZON_WORDS in err.getvalue()
    assert "sim-fleet: success" in out.getvalue()
    assert TelemetryRecord.objects.count() == 1


def test_runsync_since_within_retention_says_nothing(golioth_integration):
    err = io.StringIO()

    call_command("runsync", "sim-fleet", "--since", "2d", stdout=io.StringIO(), stderr=err)

    assert err.getvalue() == ""


def test_integration_create_and_update_warn_about_an_old_backfill_from(monkeypatch, db, now):
    monkeypatch.setenv("GOLIOTH_API_KEY", "cli-key-0123-abcd")
    old = (now - timedelta(days=60)).strftime("%Y-%m-%d %H:%M")
    err = io.StringIO()

    call_command(
        "integration", "create", "fleet", "--project-id", "p", "--backfill-from", old,
        stdout=io.StringIO(), stderr=err,
    )  # fmt: skip
    assert "The first pull (backfillFrom) starts" in err.getvalue()

    err = io.StringIO()
    recent = (now - timedelta(days=2)).strftime("%Y-%m-%d %H:%M")
    call_command(
        "integration", "update", "fleet", "--backfill-from", recent,
        stdout=io.StringIO(), stderr=err,
    )  # fmt: skip
    assert err.getvalue() == ""
