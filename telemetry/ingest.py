"""The one writer of readings, shared by the pull (sync) and the push (webhooks).

Insert-or-ignore on the dedup key, batch by batch, never read-then-write: the same reading arriving
by webhook, by pull, by a retried page or an overlapping window is stored once. PostgreSQL gets COPY
into a temporary table and one `INSERT ... SELECT ... ON CONFLICT DO NOTHING` for batches of
COPY_MIN_ROWS or more; smaller batches and other databases get `INSERT ... ON CONFLICT DO NOTHING`
through executemany. Both count what they inserted exactly.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, cast

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from telemetry.keys import canonical_digest, canonical_json, dedup_key_hex, payload_digest
from telemetry.models import Device, TelemetryRecord

logger = logging.getLogger(__name__)

# Readings per transaction. Each batch costs a few statements whatever its size (the approximate
# time check, the insert, one last_seen UPDATE touching each device once), so big batches are
# cheaper per reading: 10,000 ingests 200k readings ~35% faster than 2,000 (bench/bench_ingest.py)
# for ~10 MB held. Its last_seen UPDATE binds two parameters per device: SQLite allows 32,766.
BATCH_SIZE = 10_000
# COPY through a temporary table costs four round trips and a truncate per commit: below a few
# dozen rows (a webhook's single reading) one INSERT ... ON CONFLICT is the faster path.
COPY_MIN_ROWS = 32
COLUMNS = (
    "device_id",
    "integration_id",
    "path",
    "telemetry",
    "device_timestamp",
    "received_at",
    "source",
    "time_exact",
    "activity_id",
    "dedup_key",
)
# The dedup key's unique constraint (TelemetryRecord.Meta, "telemetry_dedup"): with the reading's
# time, which the key includes and PostgreSQL's partitions need in every unique index.
ON_CONFLICT = "ON CONFLICT (dedup_key, device_timestamp) DO NOTHING"


@dataclass(frozen=True, slots=True)
class Reading:
    device_pk: int
    device_external_id: str
    timestamp: datetime
    payload: Any
    path: str = ""
    time_exact: bool = True


@dataclass
class IngestResult:
    inserted: int = 0
    duplicates: int = 0
    corrected: int = 0
    # Payloads that cannot be stored (NaN, Infinity, an integer of more than 4300 digits): not
    # stored, counted, logged; never counted as duplicates. The rest of the batch is stored.
    rejected: int = 0
    # Why the first of them was refused, one line (a webhook's single reading says it back).
    rejected_reason: str = ""
    # Of the rejected, how many for being larger than GSYNC_MAX_READING_BYTES.
    too_large: int = 0

    def __iadd__(self, other: IngestResult) -> IngestResult:
        self.inserted += other.inserted
        self.duplicates += other.duplicates
        self.corrected += other.corrected
        self.rejected += other.rejected
        self.rejected_reason = self.rejected_reason or other.rejected_reason
        self.too_large += other.too_large
        return self

    @property
    def received(self) -> int:
        return self.inserted + self.duplicates


def ingest_readings(
    readings: Iterable[Reading],
    *,
    integration_id: int,
    source: str,
    activity_id: int | None = None,
    time_tolerance: timedelta = timedelta(seconds=120),
    batch_size: int = BATCH_SIZE,
    advance_last_seen: bool = True,
    approximate_stored: bool = True,
    per_reading: list[IngestResult] | None = None,
) -> IngestResult:
    """Store `readings` (any iterable, consumed lazily), each batch in its own transaction.

    `per_reading`, when given, receives one IngestResult per reading, in order, saying what
    became of it alone (the queued webhook path records each delivery's outcome from it).

    Inside a caller's transaction a batch joins it (no savepoint: two round trips a webhook would
    pay for nothing, since an error rolls the caller back too). `advance_last_seen=False` when
    the caller moves the devices' last_seen itself (the webhook, with the status, in one UPDATE).
    `approximate_stored=False` when the caller knows the devices have no stored row whose time
    is approximate: exact readings then have nothing to reconcile and skip the search.
    """
    result = IngestResult()
    for batch, keyed in _keyed_batches(readings, size=batch_size, integration_id=integration_id):
        with transaction.atomic(savepoint=False):
            result += _ingest_batch(
                batch,
                keyed,
                integration_id=integration_id,
                source=source,
                activity_id=activity_id,
                tolerance=time_tolerance,
                advance_last_seen=advance_last_seen,
                approximate_stored=approximate_stored,
                per_reading=per_reading,
            )
    return result


def _batched(items: Iterable[Reading], size: int) -> Iterator[list[Reading]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _keyed_batches(
    readings: Iterable[Reading], *, size: int, integration_id: int
) -> Iterator[tuple[list[Reading], _Keyed]]:
    """Each batch with its keys (`_keyed_rows`). While the caller stores one batch, a thread
    computes the next one's keys: JSON and two hashes a reading are a third of ingest's time,
    and the caller's wait on the database releases the GIL. `readings` is still read in the
    caller's thread, one batch ahead; a batch read before the iterator fails is still stored."""
    batches = _batched(readings, size)
    batch = next(batches, None)
    keyed = _keyed_rows(batch, integration_id=integration_id) if batch else None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gsync-keys") as keyer:
        while batch and keyed:
            try:
                following = next(batches, None)
            except Exception:
                yield batch, keyed
                raise
            pending = following and keyer.submit(
                _keyed_rows, following, integration_id=integration_id
            )
            yield batch, keyed
            batch, keyed = following, pending.result() if pending else None


@dataclass(slots=True)
class _Row:
    reading: Reading
    key: str  # the dedup key's 32 hex digits (dedup_key_hex)
    digest: str
    document: str


def _ingest_batch(
    batch: list[Reading],
    keyed: _Keyed,
    *,
    integration_id: int,
    source: str,
    activity_id: int | None,
    tolerance: timedelta,
    advance_last_seen: bool,
    approximate_stored: bool,
    per_reading: list[IngestResult] | None = None,
) -> IngestResult:
    rows, refused, slots = keyed
    accepted = len(batch) - len(refused)
    result = _refused_result(refused)
    result.duplicates = accepted - len(rows)
    fresh = list(rows.values())
    if approximate_stored or not all(row.reading.time_exact for row in fresh):
        fresh, result.corrected, known = _reconcile_approximate_times(fresh, tolerance)
        result.duplicates += known
    inserted, inserted_keys = _insert(
        fresh,
        integration_id=integration_id,
        source=source,
        activity_id=activity_id,
        returning=per_reading is not None,
    )
    result.inserted = inserted
    result.duplicates += len(fresh) - inserted
    if advance_last_seen:
        _advance_last_seen([row.reading for row in rows.values()])
    if per_reading is not None:
        per_reading.extend(_each_reading(slots, inserted_keys or set()))
    return result


def _each_reading(slots: list[str | _Refused], inserted_keys: set[str]) -> Iterator[IngestResult]:
    """What became of each reading of a batch: the first holder of an inserted key was stored;
    a refused one says why; every other one was a duplicate (of a stored row or of another
    reading of the batch)."""
    for slot in slots:
        if isinstance(slot, _Refused):
            yield _refused_result([slot])
        elif slot in inserted_keys:
            inserted_keys.discard(slot)
            yield IngestResult(inserted=1)
        else:
            yield IngestResult(duplicates=1)


class _Refused(ValueError):
    """A payload that is not stored; its message says why, in one line."""

    def __init__(self, reason: str, *, too_large: bool = False) -> None:
        super().__init__(reason)
        self.too_large = too_large


# A batch by dedup key, the payloads refused, and each reading's key or refusal in order.
_Keyed = tuple[dict[str, _Row], list[_Refused], list[str | _Refused]]


def _keyed_rows(batch: list[Reading], *, integration_id: int) -> _Keyed:
    """The batch by dedup key (repeats within it collapse), the payloads refused, and each
    reading's key or refusal, in order."""
    rows: dict[str, _Row] = {}
    refused = []
    slots: list[str | _Refused] = []
    limit = settings.GSYNC_MAX_READING_BYTES
    for reading in batch:
        try:
            document = _document(reading.payload, limit=limit)
        except _Refused as exc:
            refused.append(exc)
            slots.append(exc)
            logger.warning(
                "Reading of device %s at %s not stored: %s",
                reading.device_external_id,
                reading.timestamp,
                exc,
            )
            continue
        # The payload is encoded once: its digest, its key and the stored text all come from it.
        digest = canonical_digest(document)
        key = dedup_key_hex(
            integration_id=integration_id,
            device_external_id=reading.device_external_id,
            timestamp=reading.timestamp,
            digest=digest,
        )
        slots.append(key)
        if key not in rows:
            rows[key] = _Row(reading, key, digest, document.decode())
    return rows, refused, slots


def _document(payload: Any, *, limit: int) -> bytes:
    """The stored text of `payload`, or _Refused: not JSON (NaN, an integer of more than 4300
    digits), or larger than `limit` bytes."""
    try:
        document = canonical_json(payload)
    except ValueError as exc:
        if "Out of range float" in str(exc):
            raise _Refused(
                "payload cannot be stored as JSON: it holds NaN, Infinity or a number "
                "too large to store"
            ) from None
        # Python's own message, up to its advice on raising the limit.
        raise _Refused(
            f"payload cannot be stored as JSON: {str(exc).split(';')[0][:200]}"
        ) from None
    except (TypeError, RecursionError) as exc:
        raise _Refused(
            f"payload cannot be stored as JSON: {str(exc).split(';')[0][:200]}"
        ) from None
    if len(document) > limit:
        raise _Refused(
            f"payload is {len(document):,} bytes of JSON, over the {limit}-byte limit "
            "(GSYNC_MAX_READING_BYTES)",
            too_large=True,
        )
    return document


def _refused_result(refused: list[_Refused]) -> IngestResult:
    return IngestResult(
        rejected=len(refused),
        rejected_reason=str(refused[0]) if refused else "",
        too_large=sum(1 for r in refused if r.too_large),
    )


def count_new_readings(readings: Iterable[Reading], *, integration_id: int) -> IngestResult:
    """What `ingest_readings` would do, without writing: readings whose key is not stored yet
    count as inserted (a dry run's estimate; approximate-time corrections are not predicted)."""
    readings = list(readings)
    rows, refused, _ = _keyed_rows(readings, integration_id=integration_id)
    stored = TelemetryRecord.objects.filter(dedup_key__in=list(rows)).count()
    repeats = len(readings) - len(refused) - len(rows)
    result = _refused_result(refused)
    result.inserted, result.duplicates = len(rows) - stored, repeats + stored
    return result


# --- approximate times ---------------------------------------------------------------------------


def _reconcile_approximate_times(
    rows: list[_Row], tolerance: timedelta
) -> tuple[list[_Row], int, int]:
    """Match readings against stored rows whose time is only gsync's receive time.

    A webhook without Golioth's time is stored with `time_exact=False`. When the exact copy arrives
    (the pull), the stored row takes its time and key instead of a second row being added. An
    approximate reading that matches any stored row nearby is a repeat and is not stored.
    Returns (rows still to insert, rows corrected, rows known already).
    """
    if not rows:
        return rows, 0, 0
    low = min(r.reading.timestamp for r in rows) - tolerance
    high = max(r.reading.timestamp for r in rows) + tolerance
    device_pks = {r.reading.device_pk for r in rows}
    approximate_new = any(not r.reading.time_exact for r in rows)
    stored = TelemetryRecord.objects.filter(
        device_id__in=device_pks, device_timestamp__range=(low, high)
    )
    if not approximate_new:
        stored = stored.filter(time_exact=False)
    candidates = list(
        stored.values("id", "device_id", "device_timestamp", "telemetry", "time_exact")
    )
    if not candidates:
        return rows, 0, 0
    by_payload: dict[tuple[int, str], list[dict]] = {}
    for stored_row in candidates:
        key = (stored_row["device_id"], payload_digest(stored_row["telemetry"]))
        by_payload.setdefault(key, []).append(dict(stored_row))
    fresh: list[_Row] = []
    corrected = known = 0
    for row in rows:
        match = _nearest(by_payload.get((row.reading.device_pk, row.digest), []), row, tolerance)
        if match is None:
            fresh.append(row)
        elif not row.reading.time_exact:
            known += 1
        else:
            by_payload[(row.reading.device_pk, row.digest)].remove(match)
            _correct_time(match["id"], row)
            corrected += 1
            known += 1
    return fresh, corrected, known


def _nearest(candidates: list[dict], row: _Row, tolerance: timedelta) -> dict | None:
    wanted_exact = row.reading.time_exact
    close = [
        c
        for c in candidates
        if abs(c["device_timestamp"] - row.reading.timestamp) <= tolerance
        and (not wanted_exact or not c["time_exact"])
    ]
    return min(
        close, key=lambda c: abs(c["device_timestamp"] - row.reading.timestamp), default=None
    )


def _correct_time(record_id: int, row: _Row) -> None:
    exact = TelemetryRecord.objects.filter(
        dedup_key=row.key, device_timestamp=row.reading.timestamp
    )
    if exact.exists():
        # The exact copy is stored already (two approximate copies were kept): drop this one.
        TelemetryRecord.objects.filter(pk=record_id).delete()
        return
    TelemetryRecord.objects.filter(pk=record_id).update(
        device_timestamp=row.reading.timestamp, time_exact=True, dedup_key=row.key
    )


# --- insert --------------------------------------------------------------------------------------


def _insert(
    rows: list[_Row],
    *,
    integration_id: int,
    source: str,
    activity_id: int | None,
    returning: bool = False,
) -> tuple[int, set[str] | None]:
    """Insert-or-ignore; how many were inserted and, when `returning`, their keys (hex)."""
    if not rows:
        return 0, set() if returning else None
    # In key order: two writers storing the same readings (a webhook's copy and the pull's, two
    # ingest workers) then wait on each other's keys in one order, never each on the other's
    # ("deadlock detected" on the unique index otherwise).
    rows = sorted(rows, key=attrgetter("key"))
    batch = (integration_id, timezone.now(), source, activity_id)
    if connection.vendor == "postgresql" and len(rows) >= COPY_MIN_ROWS:
        return _insert_postgresql(rows, batch=batch, returning=returning)
    values = [
        (
            r.reading.device_pk,
            integration_id,
            r.reading.path,
            r.document,
            r.reading.timestamp,
            batch[1],
            source,
            r.reading.time_exact,
            activity_id,
            r.key,
        )
        for r in rows
    ]
    if returning:
        keys = _insert_portable_returning(values)
        return len(keys), keys
    return _insert_portable(values), None


# What differs from one reading of a batch to the next goes through COPY; the batch's
# integration, receive time, source and activity are bound once in the INSERT ... SELECT
# (four values fewer to format per reading, ~15% of ingest's Python time).
COPY_COLUMNS = ("device_id", "path", "telemetry", "device_timestamp", "time_exact", "dedup_key")
_SELECTED = (
    "device_id, %s::bigint, path, telemetry, device_timestamp, %s::timestamptz, %s::text, "
    "time_exact, %s::bigint, dedup_key"
)


def _insert_postgresql(
    rows: list[_Row], *, batch: tuple[int, datetime, str, int | None], returning: bool
) -> tuple[int, set[str] | None]:
    table = TelemetryRecord._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS gsync_ingest ("
            " device_id bigint, path text, telemetry jsonb, device_timestamp timestamptz,"
            " time_exact boolean, dedup_key uuid) ON COMMIT DELETE ROWS"
        )
        copy_sql = f"COPY gsync_ingest ({', '.join(COPY_COLUMNS)}) FROM STDIN"
        with cursor.cursor.copy(copy_sql) as copy:
            for r in rows:
                reading = r.reading
                copy.write_row(
                    (
                        reading.device_pk,
                        reading.path,
                        r.document,
                        reading.timestamp,
                        reading.time_exact,
                        r.key,
                    )
                )
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(COLUMNS)}) "  # noqa: S608
            f"SELECT {_SELECTED} FROM gsync_ingest {ON_CONFLICT}"
            + (" RETURNING dedup_key" if returning else ""),
            batch,
        )
        inserted = cursor.rowcount
        keys = _returned_keys(cursor.fetchall()) if returning else None
        cursor.execute("TRUNCATE gsync_ingest")
    return inserted, keys


def _returned_keys(rows: list[tuple]) -> set[str]:
    """RETURNING dedup_key as dedup_key_hex gives it: a UUID (PostgreSQL) or its hex (SQLite)."""
    return {uuid.UUID(str(row[0])).hex for row in rows}


def _prepared(values: list[tuple]) -> list[tuple]:
    fields = [
        cast(models.Field, TelemetryRecord._meta.get_field(c.removesuffix("_id"))) for c in COLUMNS
    ]
    return [
        tuple(
            value if field.name in ("telemetry",) else field.get_db_prep_save(value, connection)
            for field, value in zip(fields, row, strict=True)
        )
        for row in values
    ]


# Rows per multi-row INSERT ... RETURNING: SQLite binds at most 32,766 parameters.
RETURNING_ROWS = 3_000


def _insert_portable_returning(values: list[tuple]) -> set[str]:
    """Insert-or-ignore by multi-row VALUES, returning the inserted keys (executemany returns
    no rows). RETURNING: PostgreSQL, SQLite >= 3.35."""
    table = TelemetryRecord._meta.db_table
    one = "(" + ", ".join(["%s"] * len(COLUMNS)) + ")"
    keys: set[str] = set()
    prepared = _prepared(values)
    with connection.cursor() as cursor:
        for start in range(0, len(prepared), RETURNING_ROWS):
            chunk = prepared[start : start + RETURNING_ROWS]
            sql = (
                f"INSERT INTO {table} ({', '.join(COLUMNS)}) "  # noqa: S608
                f"VALUES {', '.join([one] * len(chunk))} "
                f"{ON_CONFLICT} RETURNING dedup_key"
            )
            cursor.execute(sql, [value for row in chunk for value in row])
            keys.update(_returned_keys(cursor.fetchall()))
    return keys


def _insert_portable(values: list[tuple]) -> int:
    table = TelemetryRecord._meta.db_table
    prepared = _prepared(values)
    placeholders = ", ".join(["%s"] * len(COLUMNS))
    sql = f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({placeholders}) {ON_CONFLICT}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.executemany(sql, prepared)
        return cursor.rowcount


# --- one reading inside a caller's statement ------------------------------------------------------


def exact_reading_insert(
    reading: Reading,
    *,
    integration_id: int,
    source: str,
    activity_id: int | None,
    device_id: str,
    rows_from: str,
) -> tuple[str, dict[str, Any]] | None:
    """`INSERT ... ON CONFLICT DO NOTHING RETURNING 1` of one reading and its parameters (named
    `reading_*`), for a caller storing it inside a statement of its own (PostgreSQL: the
    synchronous webhook's, integrations.push.one_statement); None when ingest would refuse the
    payload (`ingest_readings` then says why).

    The device's id is the SQL `device_id` over `rows_from` ("FROM cte WHERE ..."): no row, no
    reading. The caller vouches that the reading's time is Golioth's own and that its device holds
    no approximate-time row, so there is nothing for `_reconcile_approximate_times` to match: the
    row, its key and its text are `ingest_readings`' own (`_keyed_rows`), and what it inserts is
    counted by the same triggers.
    """
    if not reading.time_exact:
        raise ValueError("exact_reading_insert takes readings with Golioth's own time only")
    rows, refused, _ = _keyed_rows([reading], integration_id=integration_id)
    if refused:
        return None
    (row,) = rows.values()
    # INSERT ... SELECT resolves an untyped literal as text, which no column but text takes.
    selected = (
        f"{device_id}, %(reading_integration)s::bigint, %(reading_path)s::text, "
        "%(reading_telemetry)s::jsonb, %(reading_timestamp)s::timestamptz, "
        "%(reading_received)s::timestamptz, %(reading_source)s::text, true, "
        "%(reading_activity)s::bigint, %(reading_key)s::uuid"
    )
    sql = (
        f"INSERT INTO {TelemetryRecord._meta.db_table} ({', '.join(COLUMNS)}) "  # noqa: S608
        f"SELECT {selected} {rows_from} {ON_CONFLICT} RETURNING 1"
    )
    params = {
        "reading_integration": integration_id,
        "reading_path": reading.path,
        "reading_telemetry": row.document,
        "reading_timestamp": reading.timestamp,
        "reading_received": timezone.now(),
        "reading_source": source,
        "reading_activity": activity_id,
        "reading_key": row.key,
    }
    return sql, params


# --- last_seen -----------------------------------------------------------------------------------


def _advance_last_seen(batch: list[Reading]) -> None:
    """One UPDATE per batch: each device's last_seen moves forward to its newest reading.

    Raw SQL because the ORM's per-device CASE WHEN costs more to build than the batch costs to
    store; `UPDATE ... FROM` works on PostgreSQL and SQLite >= 3.33 alike.
    """
    newest: dict[int, datetime] = {}
    for reading in batch:
        if reading.device_pk not in newest or reading.timestamp > newest[reading.device_pk]:
            newest[reading.device_pk] = reading.timestamp
    if not newest:
        return
    table = Device._meta.db_table
    rows = ", ".join(["(%s, %s)"] * len(newest))
    params = []
    for pk, moment in newest.items():
        params += [pk, connection.ops.adapt_datetimefield_value(moment)]
    sql = (
        f"WITH v(id, ts) AS (VALUES {rows}) "  # noqa: S608
        f"UPDATE {table} SET last_seen = v.ts FROM v WHERE {table}.id = v.id "
        f"AND ({table}.last_seen IS NULL OR {table}.last_seen < v.ts)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
