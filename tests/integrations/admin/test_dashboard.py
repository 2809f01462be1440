from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User

from integrations.admin.dashboard import (
    HealthState,
    integration_health,
    readings_chart,
    readings_per_hour,
    run_stats,
)
from integrations.models import ActivityLog

Activity = ActivityLog.ActivityType
NOW = datetime(2026, 3, 3, 12, 30, tzinfo=UTC)  # a Tuesday


def log(integration, kind=Activity.SYNC_IMPORT, *, status="success", at=NOW, ms=1000, inserted=0):
    return ActivityLog.objects.log(
        integration,
        activity_type=kind,
        status=status,
        started_at=at,
        completed_at=at + timedelta(milliseconds=ms),
        readings_inserted=inserted,
    )


@pytest.mark.django_db
def test_run_stats_counts_rate_average_and_p95(integration):
    for ms in range(1, 101):  # durations 1..100 ms, one failed, one partial
        status = {1: "failed", 2: "partial"}.get(ms, "success")
        log(integration, at=NOW - timedelta(minutes=ms), ms=ms, status=status)
    log(integration, at=NOW - timedelta(hours=25), ms=99_999)  # too old
    log(integration, Activity.SYNC_SKIPPED, status="skipped", ms=99_999)  # not a run
    stats = run_stats(now=NOW)
    assert (stats.runs, stats.succeeded, stats.partial, stats.failed) == (100, 98, 1, 1)
    assert stats.success_rate == pytest.approx(0.98)
    assert stats.avg_ms == pytest.approx(50.5)
    assert stats.p95_ms == 95


@pytest.mark.django_db
def test_run_stats_empty_has_no_rate():
    stats = run_stats(now=NOW)
    assert (stats.runs, stats.success_rate, stats.avg_ms, stats.p95_ms) == (0, None, None, None)


@pytest.mark.django_db
def test_readings_per_hour_by_source(integration):
    log(integration, Activity.WEBHOOK_RECEIVED, at=NOW - timedelta(minutes=10), inserted=7)
    log(integration, Activity.SYNC_IMPORT, at=NOW - timedelta(minutes=20), inserted=5)
    log(integration, Activity.SYNC_IMPORT, at=NOW - timedelta(hours=2), inserted=3)
    log(integration, Activity.BACKFILL, at=NOW - timedelta(hours=2), inserted=100)
    log(integration, Activity.SYNC_IMPORT, at=NOW - timedelta(hours=30), inserted=1000)
    hours = readings_per_hour(now=NOW)
    assert len(hours) == 24
    assert hours[-1].start == datetime(2026, 3, 3, 12, tzinfo=UTC)
    assert hours[-1].counts == {"push": 7, "pull": 5, "backfill": 0}
    assert hours[-3].counts == {"push": 0, "pull": 3, "backfill": 100}
    assert sum(h.total for h in hours) == 115


def test_readings_chart_scales_stacked_bars():
    from integrations.admin.dashboard import HourCounts

    hours = [
        HourCounts(NOW, {"push": 30, "pull": 10, "backfill": 0}),
        HourCounts(NOW + timedelta(hours=1), {"push": 0, "pull": 0, "backfill": 0}),
    ]
    chart = readings_chart(hours, width=200, height=124)
    plot = chart.plot_bottom - chart.plot_top  # 90 px for a scale of 40 (4 steps of 10)
    push, pull = chart.bars
    assert (push.height, pull.height) == (
        pytest.approx(plot * 30 / 40),
        pytest.approx(plot * 10 / 40),
    )
    assert pull.y + pull.height == pytest.approx(push.y)  # stacked
    assert [label for _, label in chart.y_ticks] == ["0", "10", "20", "30", "40"]
    assert chart.total == 40 and chart.peak == 40


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "settings", "state"),
    [
        ({"status": "paused"}, {}, HealthState.PAUSED),
        ({}, {"syncEnabled": False}, HealthState.PAUSED),
        ({"status": "error", "sync_error": "bad key", "consecutive_failures": 5}, {}, "failing"),
        ({"last_sync_status": "failed", "consecutive_failures": 1}, {}, HealthState.FAILING),
        (
            {"last_sync_at": NOW - timedelta(minutes=1)},
            {"timeWindow": {"start": "01:00", "end": "02:00", "timezone": "UTC"}},
            HealthState.OUTSIDE_WINDOW,
        ),
        ({"last_sync_at": NOW - timedelta(minutes=10)}, {"syncIntervalSeconds": 300}, "late"),
        ({"last_sync_at": NOW - timedelta(minutes=4)}, {"syncIntervalSeconds": 300}, "ok"),
        ({"locked_until": NOW + timedelta(minutes=1)}, {}, HealthState.RUNNING),
    ],
)
def test_integration_health_states(make_integration, fields, settings, state):
    integration = make_integration(settings=settings, **fields)
    health = integration_health(integration, now=NOW)
    assert health.state == state
    assert health.reason


@pytest.mark.django_db
def test_integration_health_failing_says_why(make_integration):
    integration = make_integration(
        last_sync_status="failed", consecutive_failures=2, sync_error="401: bad API key\ntrace"
    )
    reason = integration_health(integration, now=NOW).reason
    assert reason == "2 failed runs in a row: 401: bad API key"


@pytest.mark.django_db
def test_integration_health_late_needs_the_window_open_a_while(make_integration):
    window = {"start": "12:29", "end": "18:00", "timezone": "UTC"}
    integration = make_integration(
        settings={"timeWindow": window}, last_sync_at=NOW - timedelta(days=1)
    )
    assert integration_health(integration, now=NOW).state == HealthState.OK


@pytest.mark.django_db
def test_admin_index_shows_dashboard(admin_client, integration):
    log(integration, at=datetime.now(UTC) - timedelta(minutes=5), ms=2000, inserted=42)
    response = admin_client.get("/admin/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "gsync at a glance" in html
    assert "Runs, last 24 h" in html and "p95 duration" in html
    assert "<svg" in html and "42 readings stored in the last 24 hours" in html
    assert "2.0 s" in html  # average and p95 of the one run
    assert "cdn" not in html.lower() and '<script src="http' not in html  # works offline


@pytest.mark.django_db
def test_admin_index_hides_dashboard_without_permission(client):
    user = User.objects.create_user("clerk", password="pw-12345-xyz", is_staff=True)
    client.force_login(user)
    response = client.get("/admin/")
    assert response.status_code == 200
    assert "gsync at a glance" not in response.content.decode()
