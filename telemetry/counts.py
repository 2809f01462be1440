"""Readings counted per integration and minute of their own time, kept by the database.

The dashboard chart, the control panel and the lag column show how many readings were stored
over hours and days. Counted from the readings, that costs every reading in the range (a week of
100,000 devices at one a minute is a billion index entries); counted here, it costs one row per
integration and minute, whatever the fleet.

Triggers on device_telemetry_history keep `telemetry_minute_counts` right for every write that
goes through the table, whoever makes it (ingest, a corrected time, retention's batches, a
cascade from a deleted device): on PostgreSQL statement-level triggers whose transition tables
hold only the rows really inserted (a duplicate that ON CONFLICT skips is not counted), one
upsert of a handful of rows per statement; on SQLite one upsert per row. The trigger SQL *is*
the minute rule; `minute_start` is the same rule for Python. Two writes bypass triggers and
are handled where they happen: a partition dropped whole (telemetry.partitioning) and a table
filled with triggers disabled (bench/bench_admin.py), which `manage.py count_readings` (the
`recount` here) rebuilds an hour of reading time per transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Min

from telemetry.models import ReadingCount, TelemetryRecord

COUNTS = ReadingCount._meta.db_table
# A recount holds ingest's count updates while it counts one span: an hour is a few thousand
# readings today, 6M at 100,000 devices a minute (a second or two).
RECOUNT_SPAN = timedelta(hours=1)
TRIGGER_OPS = ("insert", "delete", "update")

_PG_MINUTE = "date_bin('1 minute', {column}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
_PG_UPSERT = (
    f"INSERT INTO {COUNTS} (integration_id, minute, readings) "  # noqa: S608
    "SELECT integration_id, minute, sum(n) FROM ({changes}) AS c GROUP BY 1, 2 "
    # In key order, so two concurrent batches lock shared rows in the same order (no deadlock).
    "HAVING sum(n) <> 0 ORDER BY 1, 2 "
    f"ON CONFLICT (integration_id, minute) DO UPDATE SET readings = {COUNTS}.readings "
    "+ EXCLUDED.readings"
)
_PG_ROWS = "SELECT integration_id, " + _PG_MINUTE.format(column="device_timestamp") + " AS minute, "
_PG_CHANGES = {
    "insert": _PG_ROWS + "1 AS n FROM new_rows",
    "delete": _PG_ROWS + "-1 AS n FROM old_rows",
    "update": _PG_ROWS + "1 AS n FROM new_rows UNION ALL " + _PG_ROWS + "-1 FROM old_rows",
}
_PG_REFERENCING = {
    "insert": "NEW TABLE AS new_rows",
    "delete": "OLD TABLE AS old_rows",
    "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
}
_SQLITE_MINUTE = "strftime('%Y-%m-%d %H:%M:00', {row}.device_timestamp)"
_SQLITE_UPSERT = (
    f"INSERT INTO {COUNTS} (integration_id, minute, readings) "  # noqa: S608
    "VALUES ({row}.integration_id, " + _SQLITE_MINUTE + ", {n}) "
    "ON CONFLICT (integration_id, minute) DO UPDATE SET readings = readings + excluded.readings;"
)
_SQLITE_BODIES = {
    "insert": _SQLITE_UPSERT.format(row="NEW", n=1),
    "delete": _SQLITE_UPSERT.format(row="OLD", n=-1),
    "update": _SQLITE_UPSERT.format(row="OLD", n=-1) + _SQLITE_UPSERT.format(row="NEW", n=1),
}


def minute_start(moment: datetime) -> datetime:
    """The start of the minute `moment` falls in (UTC): where a window of counts begins."""
    return datetime.fromtimestamp(int(moment.timestamp()) // 60 * 60, UTC)


def install_triggers(cursor) -> None:  # noqa: ANN001 (a DB-API cursor of either backend)
    """Create the triggers that keep the counts (the migration runs this)."""
    table = TelemetryRecord._meta.db_table
    for op in TRIGGER_OPS:
        name = f"telemetry_count_{op}"
        if connection.vendor == "postgresql":
            cursor.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"{_PG_UPSERT.format(changes=_PG_CHANGES[op])}; RETURN NULL; END $$"
            )
            cursor.execute(
                f"CREATE TRIGGER {name} AFTER {op.upper()} ON {table} "
                f"REFERENCING {_PG_REFERENCING[op]} FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
            )
        else:
            columns = " OF device_timestamp, integration_id" if op == "update" else ""
            cursor.execute(
                f"CREATE TRIGGER {name} AFTER {op.upper()}{columns} ON {table} "
                f"FOR EACH ROW BEGIN {_SQLITE_BODIES[op]} END"
            )


def remove_triggers(cursor) -> None:  # noqa: ANN001
    """Drop what `install_triggers` made (the migration's reverse)."""
    table = TelemetryRecord._meta.db_table
    for op in TRIGGER_OPS:
        name = f"telemetry_count_{op}"
        if connection.vendor == "postgresql":
            cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            cursor.execute(f"DROP FUNCTION IF EXISTS {name}()")
        else:
            cursor.execute(f"DROP TRIGGER IF EXISTS {name}")


def forget_range(cursor, *, start: datetime | None, end: datetime | None) -> None:  # noqa: ANN001
    """Drop the counts of [start, end) (None: unbounded), the readings of a partition dropped
    whole."""
    where, params = _minutes_between("minute", start, end)
    cursor.execute(f"DELETE FROM {COUNTS} WHERE {where}", params)  # noqa: S608


def recount(*, span: timedelta = RECOUNT_SPAN) -> int:
    """Rebuild every count from the readings stored, one `span` of reading time (and the empty
    time before it) per transaction; returns how many spans were counted. Each transaction locks
    the counts (not the readings) before it reads: a concurrent ingest's trigger waits, and adds
    its readings, which the recount's snapshot does not see, after it. The spans follow each
    other with no gap, so a reading stored meanwhile anywhere is counted once."""
    readings = TelemetryRecord.objects.order_by()
    done: datetime | None = None  # counted up to here
    spans = 0
    while True:
        rest = readings if done is None else readings.filter(device_timestamp__gte=done)
        first = rest.aggregate(first=Min("device_timestamp"))["first"]
        end = None if first is None else minute_start(first) + span
        _recount_span(done, end)
        if end is None:
            return spans
        done, spans = end, spans + 1


def _recount_span(start: datetime | None, end: datetime | None) -> None:
    minute = (
        _PG_MINUTE.format(column="device_timestamp")
        if connection.vendor == "postgresql"
        else _SQLITE_MINUTE.format(row="r").replace("%", "%%")
    )
    table = TelemetryRecord._meta.db_table
    where, params = _minutes_between("device_timestamp", start, end)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"LOCK TABLE {COUNTS} IN EXCLUSIVE MODE")
        forget_range(cursor, start=start, end=end)
        cursor.execute(
            f"INSERT INTO {COUNTS} (integration_id, minute, readings) "  # noqa: S608
            f"SELECT integration_id, {minute}, count(*) FROM {table} AS r WHERE {where} "
            "GROUP BY 1, 2",
            params,
        )


def _minutes_between(
    column: str, start: datetime | None, end: datetime | None
) -> tuple[str, list[Any]]:
    """`column` in [start, end) (None: unbounded) as SQL and its parameters, adapted for raw
    SQL (SQLite compares the stored text, which has no "+00:00")."""
    bounds = [(f"{column} >= %s", start), (f"{column} < %s", end)]
    kept = [(sql, value) for sql, value in bounds if value is not None]
    where = " AND ".join(["1 = 1"] + [sql for sql, _ in kept])
    return where, [connection.ops.adapt_datetimefield_value(value) for _, value in kept]
