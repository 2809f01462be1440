"""Admin times have seconds and one format (issue 12)."""

from datetime import UTC, datetime, timedelta

from integrations.models import ActivityLog

ACTIVITY_URL = "/admin/integrations/activitylog/"


def test_activity_entries_a_second_apart_show_their_seconds(admin_client, integration):
    at = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
    for offset in (0, 1):
        ActivityLog.objects.log(
            integration,
            activity_type=ActivityLog.ActivityType.STATUS_CHANGED,
            status=ActivityLog.Status.SUCCESS,
            started_at=at + timedelta(seconds=offset),
            completed_at=at + timedelta(seconds=offset),
        )

    html = admin_client.get(ACTIVITY_URL).content.decode()

    assert "2026-03-01 12:00:05" in html
    assert "2026-03-01 12:00:06" in html
