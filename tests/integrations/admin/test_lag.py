"""Lag at a glance (issue 12): the cursor's and the newest reading's age against the interval,
readings per minute and silent devices, on the integrations list and the dashboard."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from integrations.admin.lag import annotate_lag, lag_of, short_age
from integrations.models import DeviceIntegration
from telemetry.models import TelemetryRecord

CHANGELIST = "/admin/integrations/deviceintegration/"
BEHIND = "#e65100"
OK = "#2e7d32"


def reading(device, at):
    return TelemetryRecord.objects.create(
        device=device,
        integration=device.integration,
        telemetry={"t": 1},
        device_timestamp=at,
        source="sync",
        dedup_key=uuid.uuid4(),
    )


def lag(integration, now):
    annotated = annotate_lag(DeviceIntegration.objects.filter(pk=integration.pk), now=now).get()
    return lag_of(annotated, now=now)


@pytest.mark.django_db
def test_lag_judges_ages_against_two_intervals(make_integration, make_device):
    now = timezone.now()
    settings = {"syncIntervalSeconds": 300, "settleSeconds": 30}
    fresh = make_integration("fresh", settings=settings, sync_cursor=now - timedelta(minutes=3))
    stale = make_integration("stale", settings=settings, sync_cursor=now - timedelta(minutes=11))
    reading(make_device(fresh), now - timedelta(minutes=2))
    assert lag(fresh, now).cursor.text == "3 min (ok)"
    assert lag(fresh, now).newest.text == "2 min (ok)"
    # 2 x 300 s + 30 s settle = 10 min 30 s: 11 min is behind.
    assert (lag(stale, now).cursor.state, lag(stale, now).cursor.text) == (
        "behind",
        "11 min (behind)",
    )
    assert lag(stale, now).newest.text == "none"


@pytest.mark.django_db
def test_lag_without_scheduled_sync_is_not_judged(make_integration):
    now = timezone.now()
    push_only = make_integration(
        settings={"syncEnabled": False}, sync_cursor=now - timedelta(days=3)
    )
    assert (lag(push_only, now).cursor.state, lag(push_only, now).cursor.text) == ("no pull", "3 d")


@pytest.mark.django_db
def test_lag_rate_and_silent_devices_use_offline_after(make_integration, make_device):
    now = timezone.now()
    strict = make_integration("strict", settings={"offlineAfterMinutes": 10})
    default = make_integration("default")
    for integration in (strict, default):
        make_device(integration, "quiet", last_seen=now - timedelta(minutes=30))
        make_device(integration, "talky", last_seen=now - timedelta(minutes=1))
        make_device(integration, "never", last_seen=None)
    device = strict.devices.get(external_id="talky")
    for minutes in range(0, 60, 2):  # 30 readings timed in the last hour
        reading(device, now - timedelta(minutes=minutes, seconds=30))
    reading(device, now - timedelta(hours=2))
    assert lag(strict, now).silent_devices == 1  # silent > 10 min
    assert lag(strict, now).silent_text == "1 silent > 10 min"
    assert lag(default, now).silent_devices == 0  # 30 min < the default 60 min
    assert lag(strict, now).rate_text == "0.5/min"


def test_short_age_reads_well():
    ages = [timedelta(seconds=45), timedelta(minutes=7), timedelta(hours=3, minutes=5),
            timedelta(hours=5), timedelta(days=3, hours=2)]  # fmt: skip
    assert [short_age(a) for a in ages] == ["45 s", "7 min", "3.1 h", "5 h", "3.1 d"]


@pytest.mark.django_db
def test_changelist_shows_a_lag_badge_for_an_old_cursor(admin_client, make_integration):
    now = timezone.now()
    make_integration("late-one", sync_cursor=now - timedelta(minutes=45),
                     last_sync_at=now - timedelta(minutes=1))  # fmt: skip
    make_integration("on-time", sync_cursor=now - timedelta(minutes=2),
                     last_sync_at=now - timedelta(minutes=1))  # fmt: skip
    html = admin_client.get(CHANGELIST).content.decode()
    assert re.search(f"background: {BEHIND};[^>]*>45 min \\(behind\\)</span>", html)
    assert re.search(f"background: {OK};[^>]*>2 min \\(ok\\)</span>", html)
    assert "0.0/min · 0 silent" in html and "0 silent &gt; 60 min" in html


@pytest.mark.django_db
def test_changelist_columns_fit_and_cut_long_texts(admin_client, make_integration):
    error = "Golioth answered 500: " + "x" * 200
    make_integration("broken", sync_error=f"{error}\nTraceback ...", last_sync_status="failed")
    html = admin_client.get(CHANGELIST).content.decode()
    start = html.index('id="result_list"')
    head = html[start : html.index("</thead>", start)]
    names = re.findall(r'<div class="text">(?:<a [^>]*>|<span>)([^<]+)</', head)
    assert names == ["Name", "Schedule", "Health", "Last run / next", "Lag",
                     "Readings", "Last error", "Verified", "Webhook"]  # fmt: skip
    assert 'id="changelist-filter"' not in html  # the filter sidebar took a quarter of 1280 px
    assert "Golioth answered 500: xxxxxxxxxxxxxxxxx…" in html
    assert f'title="{error}\nTraceback ..."' in html  # the whole error on hover
    assert "Active, every 5 min" in html
