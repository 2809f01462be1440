"""Monthly partitions of device_telemetry_history on PostgreSQL (issue 11): the one rule for
their names and bounds, how they are made ahead, and which can go whole.

The table is partitioned by range on the reading's time (`device_timestamp`), one partition per
calendar month in UTC, named `device_telemetry_history_YYYY_MM`. Around them:

- `device_telemetry_history_initial` is the table as it was before partitioning: the migration
  attached it, with everything it held, as the partition from MINVALUE up to the first month
  boundary after the upgrade. Readings older than that bound land there, on a fresh database too.
- `device_telemetry_history_default` takes what no partition covers (a device clock years ahead,
  a month retention dropped before): nothing is refused for its time. The daily maintenance
  gives each month found there its own partition, moving its rows, and creates the current and
  the next MONTHS_AHEAD months ahead of time (`ensure_partitions`).

SQLite keeps one plain table: every function here does nothing there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import OperationalError, connection, transaction

from telemetry.counts import forget_range

logger = logging.getLogger(__name__)

TABLE = "device_telemetry_history"
INITIAL = f"{TABLE}_initial"
DEFAULT = f"{TABLE}_default"
# Months created ahead of the current one: a daily task that stops for weeks still finds its
# readings a partition (and the default partition takes them after that).
MONTHS_AHEAD = 2
# Months split out of the default partition per run: a clock that sends random years must not
# create hundreds of tables in one go (the rest waits in the default partition, stored).
MAX_SPLITS_PER_RUN = 12
# Creating or dropping a partition waits this long for its locks, then gives up until the next
# run, rather than queue every reader and writer behind it (a long query holds them).
LOCK_TIMEOUT = "5s"
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock_timeout that expired


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime | None  # None: from MINVALUE
    end: datetime | None  # None: the default partition
    estimated_rows: int  # PostgreSQL's estimate (pg_class.reltuples), never a count


def partitioned() -> bool:
    """Is device_telemetry_history partitioned here (PostgreSQL after the migration)?"""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [TABLE])
        row = cursor.fetchone()
    return row is not None and row[0] == "p"


def month_start(moment: datetime) -> datetime:
    """The first instant of the UTC month `moment` falls in."""
    utc = moment.astimezone(UTC)
    return utc.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(month: datetime, months: int) -> datetime:
    index = month.year * 12 + month.month - 1 + months
    return month.replace(year=index // 12, month=index % 12 + 1)


def partition_name(month: datetime) -> str:
    return f"{TABLE}_{month:%Y_%m}"


def partitions() -> list[Partition]:
    """Every partition of the table, oldest bound first, the default partition last."""
    if not partitioned():
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, bound[1], bound[2], greatest(c.reltuples, 0)::bigint
            FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            CROSS JOIN LATERAL (SELECT regexp_match(pg_get_expr(c.relpartbound, c.oid),
                'FROM \\((?:MINVALUE|''(.*)'')\\) TO \\(''(.*)''\\)') AS bound) b
            WHERE i.inhparent = to_regclass(%s)
            """,
            [TABLE],
        )
        rows = cursor.fetchall()
    found = [
        Partition(name, _bound(start), _bound(end), estimate) for name, start, end, estimate in rows
    ]
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(found, key=lambda p: (p.end or far, p.name))


def _bound(text: str | None) -> datetime | None:
    # PostgreSQL writes a bound in the session's zone, which Django sets to UTC: '2027-01-01
    # 00:00:00+00'.
    return None if text is None else datetime.fromisoformat(text).astimezone(UTC)


def ensure_partitions(*, now: datetime) -> list[str]:
    """Create the partitions of the current month and the MONTHS_AHEAD after it, and of the
    months whose readings wait in the default partition; return the names created."""
    if not partitioned():
        return []
    existing = partitions()
    covered = [(p.start, p.end) for p in existing if p.end is not None]
    current = month_start(now)
    wanted = [add_months(current, n) for n in range(MONTHS_AHEAD + 1)]
    wanted += _months_in_default()[:MAX_SPLITS_PER_RUN]
    created = []
    for month in sorted(set(wanted)):
        if not any(_overlaps(month, start, end) for start, end in covered):
            if create_partition(month):
                created.append(partition_name(month))
    if created:
        logger.info("partitions: created %s", ", ".join(created))
    return created


def _overlaps(month: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (start is None or start < add_months(month, 1)) and (end is None or month < end)


def _months_in_default() -> list[datetime]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT date_trunc('month', device_timestamp AT TIME ZONE 'UTC') "  # noqa: S608
            f"FROM {DEFAULT} ORDER BY 1"
        )
        return [month.replace(tzinfo=UTC) for (month,) in cursor.fetchall()]


def create_partition(month: datetime) -> bool:
    """Give `month` its own partition, in one transaction, moving its rows out of the default
    partition; False when its locks were busy (the next run tries again).

    Built as a table of its own and then attached: CREATE TABLE ... PARTITION OF would lock the
    whole table (readers included) while it checks the default partition; ATTACH lets reads
    and writes of the other partitions go on. The default partition, small by design, is
    locked while its rows move and while ATTACH checks none of the month is left there.
    """
    name, start, end = partition_name(month), month, add_months(month, 1)
    moved = []

    def move_and_attach(cursor: Any) -> None:
        cursor.execute(f"LOCK TABLE {DEFAULT} IN ACCESS EXCLUSIVE MODE")
        cursor.execute(
            f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        # The range as a CHECK: ATTACH then needs no scan of the moved rows.
        cursor.execute(
            f"ALTER TABLE {name} ADD CONSTRAINT {name}_range CHECK "
            "(device_timestamp >= %s AND device_timestamp < %s)",
            [start, end],
        )
        cursor.execute(
            f"WITH moved AS (DELETE FROM {DEFAULT} WHERE device_timestamp >= %s "  # noqa: S608
            f"AND device_timestamp < %s RETURNING *) INSERT INTO {name} SELECT * FROM moved",
            [start, end],
        )
        moved.append(cursor.rowcount)
        cursor.execute(
            f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)",
            [start, end],
        )

    if not _with_short_locks(move_and_attach, what=f"creating {name}"):
        return False
    if moved[0]:
        logger.info("partitions: %d readings moved from %s to %s", moved[0], DEFAULT, name)
    return True


def _with_short_locks(work: Callable[[Any], None], *, what: str) -> bool:
    """Run `work(cursor)` in one transaction whose lock waits end after LOCK_TIMEOUT; False,
    logged and with nothing changed, when a lock stayed busy."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            work(cursor)
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        logger.warning("partitions: %s waits for the next run, a lock was busy", what)
        return False
    return True


# --- retention -----------------------------------------------------------------------------------


def droppable_partitions(oldest_cutoff: datetime | None) -> list[Partition]:
    """The partitions every one of whose readings is older than `oldest_cutoff`, the earliest
    of every integration's retention cutoff (None: some integration keeps its readings
    forever, and no partition can go whole). Never the default partition."""
    if oldest_cutoff is None:
        return []
    return [p for p in partitions() if p.end is not None and p.end <= oldest_cutoff]


def drop_partition(partition: Partition) -> bool:
    """Drop a partition whole; False when its lock was busy (it goes next run; the batches
    meanwhile delete its readings one integration at a time)."""

    def drop(cursor: Any) -> None:
        cursor.execute(f"DROP TABLE {partition.name}")
        # A dropped table fires no delete trigger: its months' counts go with it.
        forget_range(cursor, start=partition.start, end=partition.end)

    if not _with_short_locks(drop, what=f"dropping {partition.name}"):
        return False
    logger.info("partitions: dropped %s (~%d readings)", partition.name, partition.estimated_rows)
    return True
