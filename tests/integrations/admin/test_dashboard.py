from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from integrations.admin.charts import Column, Series, stacked_bars
from integrations.admin.dashboard import (
    RANGES,
    HealthState,
    integration_health,
    readings_chart,
    run_stats,
)
from integrations.admin.history import Buckets, readings_by_time
from integrations.models import ActivityLog
from telemetry.models import TelemetryRecord

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


def reading(device, at, *, n=0, received=None):
    return TelemetryRecord.objects.create(
        device=device,
        integration=device.integration,
        telemetry={"n": n},
        device_timestamp=at,
        received_at=received or timezone.now(),
        source="sync",
        dedup_key=__import__("uuid").uuid4(),
    )


@pytest.mark.django_db
def test_readings_by_time_count_the_reading_time_not_the_stored_time(integration, make_device):
    """Issue 12: 6 hours of history pulled at once sat in one bar of "stored" time."""
    device = make_device(integration)
    reading(device, NOW - timedelta(hours=5, minutes=10), received=NOW)  # stored now, timed 5 h ago
    reading(device, NOW - timedelta(minutes=5), n=1)
    reading(device, NOW - timedelta(minutes=20), n=2)
    reading(device, NOW - timedelta(hours=30), n=3)  # outside 24 h
    buckets = Buckets(size=timedelta(hours=1), count=24, now=NOW)
    counts = readings_by_time(buckets, integration_ids=[integration.pk])
    assert counts == {
        (integration.pk, datetime(2026, 3, 3, 7, tzinfo=UTC)): 1,
        (integration.pk, datetime(2026, 3, 3, 12, tzinfo=UTC)): 2,
    }


@pytest.mark.django_db
def test_readings_chart_stacks_integrations(make_integration, make_device):
    one, two = make_integration("one"), make_integration("two")
    reading(make_device(one), NOW - timedelta(hours=5))
    device = make_device(two, "t1")
    for n in range(3):
        reading(device, NOW - timedelta(hours=5), n=n)
    chart = readings_chart(now=NOW, chosen=RANGES["24h"], integrations=[one, two])
    assert [label for _, label in chart.legend] == ["one", "two"]
    assert sorted(bar.title for bar in chart.bars) == ["07:00: 1 one", "07:00: 3 two"]
    assert chart.summary == "4 readings stored in the last 24 hours, counted by reading time"


def test_stacked_bars_scale_and_stack():
    columns = [Column(NOW, {"a": 30, "b": 10}), Column(NOW + timedelta(hours=1), {})]
    series = [Series("a", "push", "#111"), Series("b", "pull", "#222")]
    chart = stacked_bars(
        columns, series, summary="", label=lambda t: f"{t:%H}", width=200, height=124
    )
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
    assert "<svg" in html
    assert "2.0 s" in html  # average and p95 of the one run
    assert "cdn" not in html.lower() and '<script src="http' not in html  # works offline


@pytest.mark.django_db
def test_admin_index_hides_dashboard_without_permission(client):
    user = User.objects.create_user("clerk", password="pw-12345-xyz", is_staff=True)
    client.force_login(user)
    response = client.get("/admin/")
    assert response.status_code == 200
    assert "gsync at a glance" not in response.content.decode()


@pytest.mark.django_db
def test_admin_index_counts_readings_by_reading_time(admin_client, integration, make_device):
    now = timezone.now()
    reading(make_device(integration), now - timedelta(hours=5), received=now)
    html = admin_client.get("/admin/").content.decode()
    assert "Readings by reading time, last 24 h" in html
    hour = timezone.localtime(now - timedelta(hours=5)).replace(minute=0)
    assert f"<title>{hour:%H}:00: 1 fleet</title>" in html
    assert "1 readings stored in the last 24 hours, counted by reading time" in html


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("range_key", "heading", "expected"),
    [
        ("6h", "6 h", "2 readings stored in the last 6 hours"),
        ("24h", "24 h", "3 readings stored in the last 24 hours"),
        ("7d", "7 d", "4 readings stored in the last 7 days"),
    ],  # fmt: skip
)
def test_admin_index_range_switch(admin_client, integration, make_device, range_key, heading,
                                  expected):  # fmt: skip
    device = make_device(integration)
    now = timezone.now()
    for age in (timedelta(minutes=1), timedelta(hours=3), timedelta(hours=20), timedelta(days=5)):
        reading(device, now - age, n=int(age.total_seconds()))
    html = admin_client.get(f"/admin/?range={range_key}").content.decode()
    assert f"Readings by reading time, last {heading}" in html
    others = [key for key in RANGES if key != range_key]
    for key in others:
        assert f'href="?range={key}"' in html
    assert f'href="?range={range_key}"' not in html
    assert f"{expected}, counted by reading time" in html


@pytest.mark.django_db
def test_admin_index_says_when_the_range_is_unknown(admin_client, integration):
    html = admin_client.get("/admin/?range=3y").content.decode()
    assert "Unknown range “3y”: showing 24 h. Choose one of 6h, 24h, 7d." in html
    assert "Readings by reading time, last 24 h" in html


@pytest.mark.django_db
def test_admin_index_names_and_links_failing_integrations(admin_client, make_integration):
    make_integration("healthy", last_sync_at=timezone.now())
    broken = make_integration(
        "broken", last_sync_status="failed", consecutive_failures=3, sync_error="401: bad key"
    )
    html = admin_client.get("/admin/").content.decode()
    attention = html[html.index('class="gsync-attention"') :]
    attention = attention[: attention.index("</ul>")]
    link = f'<a href="/admin/integrations/deviceintegration/{broken.pk}/change/">broken</a>'
    assert link in attention
    assert "3 failed runs in a row: 401: bad key" in attention
    assert "healthy" not in attention


@pytest.mark.django_db
def test_admin_index_shows_lag_per_integration_and_refreshes(admin_client, make_integration):
    make_integration("late-one", sync_cursor=timezone.now() - timedelta(hours=2))
    html = admin_client.get("/admin/").content.decode()
    table = html[html.index('class="gsync-lag"') :]
    table = table[: table.index("</table>")]
    assert "late-one" in table and "2 h (behind)" in table and "0 silent &gt; 60 min" in table
    assert '<meta http-equiv="refresh" content="60">' in html


@pytest.mark.django_db
def test_readings_by_time_bucket_edges_are_exact(integration, make_device):
    device = make_device(integration)
    edge = datetime(2026, 3, 3, 7, tzinfo=UTC)
    reading(device, edge)
    reading(device, edge - timedelta(microseconds=1), n=1)
    reading(device, edge + timedelta(minutes=59, seconds=59, microseconds=999_999), n=2)
    counts = readings_by_time(
        Buckets(size=timedelta(hours=1), count=24, now=NOW), integration_ids=[integration.pk]
    )
    assert counts == {
        (integration.pk, datetime(2026, 3, 3, 6, tzinfo=UTC)): 1,
        (integration.pk, edge): 2,
    }
