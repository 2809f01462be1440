"""Online, offline or never connected: the one rule, as one SQL expression every writer uses.

Golioth has no online flag (a device's `status` is always "-", shared/golioth-api.md): a device is
online while its last_seen (the newest of Golioth's last report and its newest reading) is within
the integration's offline-after. The pull writes it for a whole fleet (`refresh_statuses`), the
webhook for one device in the UPDATE that moves last_seen (`status_sql` of the new last_seen).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import connection

from telemetry.models import Device

Status = Device.Status


def status_sql(last_seen: str) -> str:
    """The status of the SQL expression `last_seen`; binds `%(offline_cutoff)s`."""
    return (
        f"CASE WHEN {last_seen} IS NULL THEN '{Status.NEVER.value}' "
        f"WHEN {last_seen} >= %(offline_cutoff)s THEN '{Status.ONLINE.value}' "
        f"ELSE '{Status.OFFLINE.value}' END"
    )


def offline_cutoff(*, now: datetime, offline_after: timedelta) -> Any:
    """The `%(offline_cutoff)s` parameter: a device seen before it is offline."""
    return connection.ops.adapt_datetimefield_value(now - offline_after)


def refresh_statuses(integration_id: int, *, now: datetime, offline_after: timedelta) -> int:
    """Bring every device of the integration to the rule's status; only rows whose status changes
    are written (a fleet's rows are not rewritten every run). Returns how many changed."""
    status = status_sql("last_seen")
    sql = (
        f"UPDATE {Device._meta.db_table} SET status = {status} "  # noqa: S608
        f"WHERE integration_id = %(integration)s AND status <> {status}"
    )
    params: dict[str, Any] = {
        "integration": integration_id,
        "offline_cutoff": offline_cutoff(now=now, offline_after=offline_after),
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount
