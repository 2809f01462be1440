"""What "complete" means: device-hours, the rules for comparing them, the window a reconcile
checks and how far behind "verified complete through" may fall.

A bucket is one device's readings in one UTC hour, by the reading's own time (Golioth's
`timeBucket: "1h"` groups the same way). `compare` sorts each bucket into missing (Golioth has
more), surplus (gsync has more: reported, never deleted) or equal; a bucket remembered as
consistent (Golioth holds doubles that dedupe to what gsync has) with the same counts is not
missing. After a repair, `judge` says whether each missing bucket was repaired, turned out
consistent, or is still missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Count
from django.db.models.functions import TruncHour
from django.utils import timezone

from integrations.models import ConsistentBucket, DeviceIntegration
from integrations.sync_settings import SyncSettings
from telemetry.models import TelemetryRecord

BUCKET = timedelta(hours=1)
BUCKET_NAME = "1h"
Key = tuple[datetime, str]  # (bucket start, device external id)


def floor_to_bucket(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass
class Comparison:
    checked: set[Key] = field(default_factory=set)
    missing: dict[Key, int] = field(default_factory=dict)  # bucket -> Golioth's count
    readings_missing: int = 0
    consistent: int = 0
    surplus_buckets: int = 0
    surplus_readings: int = 0


def compare(
    remote: dict[Key, int], local: dict[Key, int], remembered: dict[Key, tuple[int, int]]
) -> Comparison:
    result = Comparison(checked=remote.keys() | local.keys())
    for key in sorted(result.checked):
        golioth, ours = remote.get(key, 0), local.get(key, 0)
        if golioth > ours:
            if remembered.get(key) == (golioth, ours):
                result.consistent += 1
                continue
            result.missing[key] = golioth
            result.readings_missing += golioth - ours
        elif ours > golioth:
            result.surplus_buckets += 1
            result.surplus_readings += ours - golioth
    return result


@dataclass
class Verdict:
    repaired: int = 0
    still_missing: int = 0
    consistent: list[tuple[Key, int, int]] = field(default_factory=list)  # key, golioth, ours


def judge(
    missing: dict[Key, int],
    before: dict[Key, int],
    after: dict[Key, int],
    fetched: dict[Key, int],
) -> Verdict:
    """Each missing device-hour is now repaired, consistent (Golioth's doubles: gsync holds every
    distinct reading Golioth sent), or still missing (a reading that could not be stored, or data
    that moved while it was read)."""
    verdict = Verdict()
    for key, golioth in missing.items():
        ours = after.get(key, 0)
        if ours >= golioth:
            verdict.repaired += 1
        elif ours >= fetched.get(key, 0) and ours >= before.get(key, 0):
            verdict.consistent.append((key, golioth, ours))
        else:
            verdict.still_missing += 1
    return verdict


def local_counts(
    integration: DeviceIntegration,
    start: datetime,
    end: datetime,
    *,
    keys: Iterable[Key] | None = None,
) -> dict[Key, int]:
    """gsync's readings per device per hour in [start, end), by the reading's own time."""
    rows = (
        TelemetryRecord.objects.filter(
            integration=integration, device_timestamp__gte=start, device_timestamp__lt=end
        )
        .annotate(bucket=TruncHour("device_timestamp", tzinfo=UTC))
        .values_list("bucket", "device__external_id")
        .annotate(n=Count("id"))
    )
    wanted = set(keys) if keys is not None else None
    counts = {}
    for bucket, device_id, n in rows:
        key = (bucket.astimezone(UTC), device_id)
        if wanted is None or key in wanted:
            counts[key] = n
    return counts


def remembered(
    integration: DeviceIntegration, start: datetime, end: datetime
) -> dict[Key, tuple[int, int]]:
    """Buckets found consistent before: their (Golioth's, gsync's) counts."""
    rows = ConsistentBucket.objects.filter(
        integration=integration, bucket_start__gte=start, bucket_start__lt=end
    ).values_list("bucket_start", "device_external_id", "golioth_count", "local_count")
    return {(b.astimezone(UTC), d): (g, n) for b, d, g, n in rows}


def remember(integration: DeviceIntegration, consistent: list[tuple[Key, int, int]]) -> None:
    now = timezone.now()
    for (bucket, device_id), golioth, ours in consistent:
        ConsistentBucket.objects.update_or_create(
            integration=integration,
            device_external_id=device_id,
            bucket_start=bucket,
            defaults={"golioth_count": golioth, "local_count": ours, "checked_at": now},
        )


def verification_warning(
    integration: DeviceIntegration, sync_settings: SyncSettings, *, now: datetime
) -> str:
    """Why "verified complete through" is too far behind, or "" (GSYNC_VERIFY_MAX_LAG_HOURS).

    Judged only where the scheduler reconciles (interval on) and the pull has run: an
    integration that never synced has nothing to verify yet.
    """
    if not sync_settings.reconcile_interval_minutes or integration.sync_cursor is None:
        return ""
    limit = timedelta(hours=settings.GSYNC_VERIFY_MAX_LAG_HOURS)
    verified = integration.verified_through
    if verified is None:
        first_run = integration.created_at
        if now - first_run <= limit:
            return ""
        return (
            f"Never verified complete (no reconcile without missing readings in "
            f"{settings.GSYNC_VERIFY_MAX_LAG_HOURS} h): see its reconcile entries."
        )
    if now - verified <= limit:
        return ""
    hours = (now - verified).total_seconds() / 3600
    return (
        f"Verified complete only through {verified:%Y-%m-%d %H:%M} UTC, {hours:.0f} h ago "
        f"(limit {settings.GSYNC_VERIFY_MAX_LAG_HOURS} h): see its reconcile entries."
    )
