"""Monthly partitions of device_telemetry_history (PostgreSQL): made ahead, readings of any time
stored, a corrected time moving its reading, whole months dropped by retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django_q.conf import Conf

from integrations.models import DeviceIntegration, Heartbeat
from integrations.pruning import PARTITION, READINGS, prune
from integrations.scheduling import PRUNE_BEAT, dispatch_due_integrations
from telemetry import partitioning
from telemetry.ingest import Reading, ingest_readings
from telemetry.models import Device, TelemetryRecord
from telemetry.partitioning import (
    DEFAULT,
    INITIAL,
    MAX_SPLITS_PER_RUN,
    TABLE,
    add_months,
    ensure_partitions,
    month_start,
    partition_name,
    partitioned,
    partitions,
)

FAR = datetime(2031, 5, 1, tzinfo=UTC)  # years past any partition the migration made


@pytest.fixture(autouse=True)
def _postgresql(db):
    if connection.vendor != "postgresql":
        pytest.skip("partitions are PostgreSQL's; SQLite keeps one plain table")


@pytest.fixture
def device(integration, make_device) -> Device:
    return make_device(integration, "d1")


def store(integration: DeviceIntegration, device: Device, *moments: datetime, exact: bool = True):
    result = ingest_readings(
        [
            Reading(device.pk, device.external_id, moment, {"seq": n}, time_exact=exact)
            for n, moment in enumerate(moments)
        ],
        integration_id=integration.pk,
        source="sync",
    )
    # The test's transaction never commits: check the deferred foreign keys now, as a commit
    # would (PostgreSQL refuses to drop a table with checks pending).
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    return result


def stored_in() -> dict[datetime, str]:
    """Each reading's time and the partition that holds it."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT device_timestamp, tableoid::regclass::text FROM {TABLE}")  # noqa: S608
        return dict(cursor.fetchall())


def names() -> list[str]:
    return [p.name for p in partitions()]


def drop(*tables: str) -> None:
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"DROP TABLE {table}")


def recent_months_only() -> None:
    """As on a database partitioned long ago, its initial partition since dropped by retention:
    partitions from two months ago on."""
    drop(INITIAL)
    ensure_partitions(now=add_months(month_start(timezone.now()), -2))


# --- the table as the migration leaves it --------------------------------------------------------


def test_table_is_partitioned_with_months_ahead_and_a_default_partition():
    first = add_months(month_start(timezone.now()), 1)

    assert partitioned()
    assert names() == [
        INITIAL,
        partition_name(first),
        partition_name(add_months(first, 1)),
        DEFAULT,
    ]
    assert partitions()[0].start is None and partitions()[0].end == first


def test_one_reading_one_row_in_every_partition(integration, device):
    moments = [timezone.now() - timedelta(days=400), FAR + timedelta(days=3)]

    store(integration, device, *moments)
    again = store(integration, device, *moments)

    assert (again.inserted, again.duplicates) == (0, 2)
    assert stored_in() == {moments[0]: INITIAL, moments[1]: DEFAULT}


# --- partitions made ahead -----------------------------------------------------------------------


def test_ensure_partitions_creates_the_current_and_next_months_once():
    created = ensure_partitions(now=FAR + timedelta(days=20))
    again = ensure_partitions(now=FAR + timedelta(days=21))

    assert created == [partition_name(add_months(FAR, n)) for n in range(3)]
    assert again == []
    assert names()[-4:] == [*created, DEFAULT]


def test_a_month_waiting_in_the_default_partition_gets_its_partition_with_its_readings(
    integration, device
):
    clock_ahead = [FAR + timedelta(days=9), FAR + timedelta(days=40), FAR + timedelta(days=400)]
    store(integration, device, *clock_ahead)
    assert set(stored_in().values()) == {DEFAULT}

    created = ensure_partitions(now=timezone.now())

    # The months that hold readings, not those between them.
    months = [month_start(moment) for moment in clock_ahead]
    assert created == [partition_name(month) for month in months]
    assert stored_in() == {m: partition_name(month_start(m)) for m in clock_ahead}
    # Still one reading, one row, after the move.
    assert store(integration, device, *clock_ahead).duplicates == 3
    assert TelemetryRecord.objects.count() == 3


def test_a_clock_that_sends_random_years_splits_a_few_months_per_run(integration, device):
    years = [FAR.replace(year=FAR.year + n) for n in range(MAX_SPLITS_PER_RUN + 3)]
    store(integration, device, *years)

    first = ensure_partitions(now=timezone.now())
    second = ensure_partitions(now=timezone.now())

    assert len(first) == MAX_SPLITS_PER_RUN
    assert len(second) == 3
    assert DEFAULT not in stored_in().values()


def test_the_daily_task_creates_the_months_ahead(monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", True)
    last = partition_name(add_months(month_start(timezone.now()), 2))
    drop(partition_name(add_months(month_start(timezone.now()), 1)))

    dispatch_due_integrations(now=timezone.now())

    next_month = partition_name(add_months(month_start(timezone.now()), 1))
    assert next_month in names() and last in names()
    assert Heartbeat.objects.get(name=PRUNE_BEAT).detail["partitions_created"] == [next_month]


# --- a time corrected later ----------------------------------------------------------------------


def test_a_corrected_time_moves_the_reading_to_its_months_partition(integration, device):
    boundary = add_months(month_start(timezone.now()), 2)  # between two partitions made ahead
    received = boundary + timedelta(seconds=30)  # a webhook without Golioth's time
    golioth_time = boundary - timedelta(seconds=10)  # the pull's exact copy, 40 s earlier
    store(integration, device, received, exact=False)
    assert stored_in() == {received: partition_name(boundary)}

    result = store(integration, device, golioth_time)

    assert (result.corrected, result.inserted) == (1, 0)
    assert stored_in() == {golioth_time: partition_name(add_months(boundary, -1))}
    assert TelemetryRecord.objects.get().time_exact is True


# --- retention -----------------------------------------------------------------------------------


@pytest.fixture
def kept_3_days(device) -> DeviceIntegration:
    """The device's integration keeps 3 days of readings, in recent months' partitions."""
    recent_months_only()
    integration = device.integration
    integration.settings = {"telemetryRetentionDays": 3}
    integration.save()
    return integration


def test_prune_drops_months_older_than_every_integrations_retention(kept_3_days, device):
    two_months_ago = add_months(month_start(timezone.now()), -2)
    old = two_months_ago + timedelta(days=1)
    new = timezone.now() - timedelta(hours=2)
    store(kept_3_days, device, old, new)

    results = prune()

    dropped = {r.note: r.cutoff for r in results if r.kind == PARTITION}
    assert dropped[partition_name(two_months_ago)] == add_months(two_months_ago, 1)
    # Last month too, from its fourth day on: whole months only, each ended 3 days ago.
    assert all(end <= timezone.now() - timedelta(days=3) for end in dropped.values())
    assert not set(dropped) & set(names())
    assert stored_in() == {new: partition_name(month_start(new))}


def test_prune_drops_no_partition_while_an_integration_keeps_readings_forever(
    kept_3_days, make_integration, device, make_device
):
    forever = make_integration("kept forever")
    old = add_months(month_start(timezone.now()), -2) + timedelta(days=1)
    store(kept_3_days, device, old)
    store(forever, make_device(forever, "f1"), old + timedelta(seconds=1))
    before = names()

    results = prune(batch_size=1)

    assert names() == before
    assert stored_in() == {old + timedelta(seconds=1): partition_name(month_start(old))}
    assert [r.rows for r in results if r.kind == READINGS and r.scope == "fleet"] == [1]


def test_prune_dry_run_lists_the_partitions_it_would_drop_and_drops_nothing(kept_3_days, device):
    two_months_ago = add_months(month_start(timezone.now()), -2)
    store(kept_3_days, device, two_months_ago + timedelta(days=1))
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {partition_name(two_months_ago)}")
    out = StringIO()

    call_command("prune", "--dry-run", stdout=out)

    lines = out.getvalue().splitlines()
    line = next(line for line in lines if partition_name(two_months_ago) in line)
    assert line.split()[:4] == [*PARTITION.split(), partition_name(two_months_ago), "all"]
    assert line.endswith("~1 (whole, estimated)")
    # Its reading is not counted a second time among the integration's batches.
    assert next(line for line in lines if line.split()[:2] == ["readings", "fleet"]).endswith(" 0")
    assert partition_name(two_months_ago) in names()
    assert TelemetryRecord.objects.count() == 1


def reading_elsewhere(table: str) -> psycopg.Connection:
    """Another session that has read `table` and not finished its transaction, as an analyst's
    long query would: it holds the table's ACCESS SHARE lock."""
    db = connection.settings_dict
    analyst = psycopg.connect(
        dbname=db["NAME"], host=db["HOST"], port=db["PORT"], user=db["USER"],
        password=db["PASSWORD"],
    )  # fmt: skip
    analyst.execute(f"SELECT count(*) FROM {table}")  # noqa: S608
    return analyst


@pytest.mark.django_db(transaction=True)
def test_a_partition_whose_lock_is_busy_is_dropped_next_run(monkeypatch, caplog):
    monkeypatch.setattr(partitioning, "LOCK_TIMEOUT", "200ms")
    later = FAR.replace(year=2040)
    (name,) = ensure_partitions(now=later)[:1]
    partition = next(p for p in partitions() if p.name == name)
    analyst = reading_elsewhere(name)
    try:
        assert partitioning.drop_partition(partition) is False
        assert name in names()
        assert f"dropping {name} waits for the next run, a lock was busy" in caplog.text
    finally:
        analyst.close()
        drop(*(p.name for p in partitions() if p.start and p.start >= later))


@pytest.mark.django_db(transaction=True)
def test_a_month_whose_default_partition_is_busy_is_created_next_run(monkeypatch, caplog):
    monkeypatch.setattr(partitioning, "LOCK_TIMEOUT", "200ms")
    analyst = reading_elsewhere(DEFAULT)
    try:
        created = ensure_partitions(now=FAR)

        assert created == []
        assert partition_name(FAR) not in names()
        assert f"creating {partition_name(FAR)} waits for the next run" in caplog.text
    finally:
        analyst.close()
