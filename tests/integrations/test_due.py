"""The one "is it due" rule (integrations.due): run now, or why not, and when next.

The dispatcher, the health column, the dashboard and the admin's "Next run" all read it, so the
overnight window that once showed "Next due: in 1 minute" while the scheduler skipped it
(issue 12) is checked here once, and through the admin list as staff see it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from integrations.admin.dashboard import HealthState, integration_health
from integrations.due import Hold, due
from integrations.models import ActivityLog, DeviceIntegration
from integrations.scheduling import dispatch_due_integrations

# 22:00-06:00 Berlin (UTC+1 in early March), Monday to Friday nights.
BERLIN_WEEKNIGHTS = {
    "start": "22:00",
    "end": "06:00",
    "timezone": "Europe/Berlin",
    "days": [1, 2, 3, 4, 5],
}
TUESDAY_NOON = datetime(2026, 3, 3, 11, tzinfo=UTC)  # 12:00 in Berlin


@pytest.fixture
def night_shift(make_integration) -> DeviceIntegration:
    return make_integration(
        "night", settings={"syncIntervalSeconds": 1800, "timeWindow": BERLIN_WEEKNIGHTS}
    )


def test_outside_an_overnight_window_the_next_run_is_when_it_opens(night_shift):
    decision = due(night_shift, now=TUESDAY_NOON)

    assert decision.hold == Hold.OUTSIDE_WINDOW
    assert decision.next_at == datetime(2026, 3, 3, 21, tzinfo=UTC)
    assert decision.describe() == "window opens Tue 22:00 Europe/Berlin (21:00 UTC)"
    assert decision.skip_reason.startswith("outside the sync time window (22:00-06:00")


def test_a_friday_night_runs_into_saturday_and_then_waits_for_monday(night_shift):
    saturday_3am = datetime(2026, 3, 7, 2, tzinfo=UTC)
    saturday_noon = datetime(2026, 3, 7, 11, tzinfo=UTC)

    assert due(night_shift, now=saturday_3am).runs
    assert due(night_shift, now=saturday_noon).describe() == (
        "window opens Mon 22:00 Europe/Berlin (21:00 UTC)"
    )


def test_an_interval_that_ends_after_the_window_closes_waits_for_the_next_opening(night_shift):
    tuesday_0550_berlin = datetime(2026, 3, 3, 4, 50, tzinfo=UTC)
    night_shift.last_queued_at = tuesday_0550_berlin  # due again 06:20 Berlin: closed by then

    decision = due(night_shift, now=tuesday_0550_berlin + timedelta(minutes=1))

    assert decision.hold == Hold.WAITING
    assert decision.skip_reason is None
    assert decision.describe() == "window opens Tue 22:00 Europe/Berlin (21:00 UTC)"


def test_inside_the_window_the_interval_decides(night_shift):
    tuesday_23h_berlin = datetime(2026, 3, 3, 22, tzinfo=UTC)
    night_shift.last_queued_at = tuesday_23h_berlin - timedelta(minutes=10)

    waiting = due(night_shift, now=tuesday_23h_berlin)
    assert waiting.hold == Hold.WAITING
    assert waiting.describe() == "in 20\xa0minutes (22:20:00 UTC)"

    later = tuesday_23h_berlin + timedelta(minutes=21)
    assert due(night_shift, now=later).runs
    assert due(night_shift, now=later).describe().startswith("now")


@pytest.mark.parametrize(
    ("change", "hold", "text"),
    [
        ({"status": "paused"}, Hold.PAUSED, "not scheduled: paused (Resume to schedule it)"),
        ({"status": "error"}, Hold.STOPPED, "not scheduled: stopped after failures"),
        ({"settings": {"syncEnabled": False}}, Hold.DISABLED, "not scheduled: syncEnabled is off"),
        ({"settings": {"syncIntervalSeconds": 1}}, Hold.INVALID, "not scheduled: its settings"),
    ],
)
def test_what_holds_a_run_back_says_it_is_not_scheduled(make_integration, change, hold, text):
    integration = make_integration(**change)

    decision = due(integration, now=TUESDAY_NOON)

    assert (decision.hold, decision.next_at) == (hold, None)
    assert decision.describe().startswith(text)
    assert decision.skip_reason


def test_a_running_integration_is_not_due_and_a_dead_workers_lease_is(make_integration):
    integration = make_integration(last_queued_at=TUESDAY_NOON, locked_by="w1")
    integration.locked_until = TUESDAY_NOON + timedelta(minutes=5)
    assert due(integration, now=TUESDAY_NOON).describe() == "running now"

    integration.locked_until = TUESDAY_NOON - timedelta(seconds=1)
    assert due(integration, now=TUESDAY_NOON).runs  # its window is read again at once


def test_dispatcher_logs_the_skip_itself_once_and_calls_no_one(make_integration):
    # An unreachable Golioth: a skip that called it would fail, not skip.
    integration = make_integration(
        settings={"timeWindow": BERLIN_WEEKNIGHTS}, base_url="http://127.0.0.1:9"
    )

    for minute in range(3):
        assert dispatch_due_integrations(now=TUESDAY_NOON + timedelta(minutes=minute)) == []

    entries = ActivityLog.objects.filter(integration=integration)
    assert [(e.activity_type, e.status) for e in entries] == [("sync_skipped", "skipped")]


def test_health_and_the_admin_list_say_when_the_window_opens(admin_client, night_shift):
    health = integration_health(night_shift, now=TUESDAY_NOON)
    assert health.state == HealthState.OUTSIDE_WINDOW
    assert "next run: window opens Tue 22:00 Europe/Berlin (21:00 UTC)" in health.reason

    # The list judges by the real clock: whatever it is, it shows due()'s words, never
    # "at the next dispatch" for an integration the dispatcher would skip.
    page = admin_client.get("/admin/integrations/deviceintegration/").content.decode()
    assert due(night_shift, now=timezone.now()).describe().split(" (")[0] in page
