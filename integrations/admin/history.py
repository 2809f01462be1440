"""What happened over time, in fixed buckets: readings by their own time (the dashboard) and
one integration's runs (its page).

One aggregate query per chart, grouped by `EpochBucket`: a timestamp rounded down to a multiple
of N seconds since 1970 (so 15 min, 1 h and 6 h buckets all fall on round UTC times). It is the
one place with per-vendor SQL (SQLite's strftime, PostgreSQL's extract). The readings query
reads the per-minute counts (telemetry.counts): it costs the minutes in the chosen range, not
the readings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, Func, IntegerField, Max, Q, Sum
from django.db.models.expressions import Expression

from integrations.models import ActivityLog
from telemetry.models import ReadingCount

Activity = ActivityLog.ActivityType
RUN_ACTIVITY = (Activity.SYNC_IMPORT, Activity.BACKFILL, Activity.RECONCILE)


class EpochBucket(Func):
    """The start of the `seconds`-long bucket holding a datetime column, as Unix seconds."""

    output_field = IntegerField()

    def __init__(self, expression: Any, *, seconds: int, **extra: Any):
        self.seconds = int(seconds)
        super().__init__(expression, **extra)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # julianday, not strftime('%s'): the backend reads a literal %s as a placeholder. Only
        # the whole seconds (the stored text's first 19 characters) go through the float, so
        # rounding gives them exactly and a reading a microsecond before a bucket's edge stays
        # in the bucket before, as on PostgreSQL.
        seconds = (
            "CAST(ROUND((julianday(substr(%(expressions)s, 1, 19)) - 2440587.5) * 86400) "
            "AS INTEGER)"
        )
        template = f"({seconds} / {self.seconds}) * {self.seconds}"
        return self.as_sql(compiler, connection, template=template, **extra)

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # date_part's double, not EXTRACT's numeric: numeric arithmetic on each of a day's
        # readings was half the dashboard's query; a double holds today's epoch to the
        # microsecond, so the floor at a bucket's edge is the same.
        epoch = "date_part('epoch', %(expressions)s)"
        template = f"(FLOOR({epoch} / {self.seconds}) * {self.seconds})::bigint"
        return self.as_sql(compiler, connection, template=template, **extra)


@dataclass(frozen=True)
class Buckets:
    """`count` buckets of `size`, the last one holding `now`."""

    size: timedelta
    count: int
    now: datetime

    @property
    def starts(self) -> list[datetime]:
        seconds = int(self.size.total_seconds())
        last = int(self.now.timestamp()) // seconds * seconds
        first = last - (self.count - 1) * seconds
        return [datetime.fromtimestamp(first + i * seconds, UTC) for i in range(self.count)]

    @property
    def start(self) -> datetime:
        return self.starts[0]

    @property
    def end(self) -> datetime:
        return self.starts[-1] + self.size

    def bucket(self, column: str) -> Expression:
        return EpochBucket(column, seconds=int(self.size.total_seconds()))


def readings_by_time(
    buckets: Buckets, *, integration_ids: list[int]
) -> dict[tuple[int, datetime], int]:
    """Readings per (integration id, bucket start), by the reading's own time: a reading
    stored now but timed five hours ago counts five hours ago."""
    # From the per-minute counts (telemetry.counts): a bucket is whole minutes, and a week of
    # a big fleet is a billion readings but 10,080 rows per integration.
    rows = (
        ReadingCount.objects.filter(
            integration_id__in=integration_ids,
            minute__gte=buckets.start,
            minute__lt=buckets.end,
        )
        .annotate(bucket=buckets.bucket("minute"))
        .values("integration_id", "bucket")
        .annotate(n=Sum("readings"))
        .order_by()
    )
    return {
        (row["integration_id"], datetime.fromtimestamp(row["bucket"], UTC)): row["n"]
        for row in rows
        if row["n"]
    }


@dataclass(frozen=True)
class RunBucket:
    start: datetime
    runs: int
    failed: int
    inserted: int
    longest_ms: int


def run_history(integration_id: int, buckets: Buckets) -> list[RunBucket]:
    """An integration's finished runs (pulls, backfills, reconciles) per bucket, oldest first."""
    rows = (
        ActivityLog.objects.filter(
            integration_id=integration_id,
            activity_type__in=RUN_ACTIVITY,
            started_at__gte=buckets.start,
            started_at__lt=buckets.end,
        )
        .exclude(status__in=[ActivityLog.Status.SKIPPED, ActivityLog.Status.STARTED])
        .annotate(bucket=buckets.bucket("started_at"))
        .values("bucket")
        .annotate(
            runs=Count("id"),
            failed=Count("id", filter=Q(status=ActivityLog.Status.FAILED)),
            inserted=Sum("readings_inserted"),
            longest_ms=Max("response_time_ms"),
        )
        .order_by()
    )
    found = {datetime.fromtimestamp(row["bucket"], UTC): row for row in rows}
    empty = {"runs": 0, "failed": 0, "inserted": 0, "longest_ms": 0}
    return [
        RunBucket(
            start=start,
            runs=(row := found.get(start, empty))["runs"],
            failed=row["failed"],
            inserted=row["inserted"] or 0,
            longest_ms=row["longest_ms"] or 0,
        )
        for start in buckets.starts
    ]
