"""The per-minute reading counts (telemetry.counts) say what is stored, after every kind of
write: new readings, duplicates, a corrected time, retention, a deleted device, a dropped
partition, and a recount of a table filled without them."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from telemetry.counts import minute_start
from telemetry.ingest import COPY_MIN_ROWS, Reading, ingest_readings
from telemetry.models import ReadingCount, TelemetryRecord
from telemetry.retention import prune_telemetry

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def device(integration, make_device):
    return make_device(integration, "d1")


def store(device, *seconds: float, exact: bool = True, start: datetime = T0, payload=None):
    return ingest_readings(
        [
            Reading(
                device.pk,
                device.external_id,
                start + timedelta(seconds=s),
                payload or {"s": s},
                time_exact=exact,
            )
            for s in seconds
        ],
        integration_id=device.integration_id,
        source="sync",
    )


def counted() -> Counter:
    return Counter(
        {
            (row.integration_id, row.minute): row.readings
            for row in ReadingCount.objects.all()
            if row.readings
        }
    )


def stored() -> Counter:
    return Counter(
        (integration_id, minute_start(moment))
        for integration_id, moment in TelemetryRecord.objects.values_list(
            "integration_id", "device_timestamp"
        )
    )


@pytest.mark.parametrize("size", [3, COPY_MIN_ROWS + 5], ids=["insert", "copy"])
def test_counts_are_the_readings_stored_by_minute_and_skip_duplicates(device, size):
    seconds = [n * 20 for n in range(size)]  # three a minute, over several minutes

    store(device, *seconds)
    store(device, *seconds, seconds[-1] + 20)  # all duplicates but one

    assert counted() == stored()
    assert sum(counted().values()) == size + 1


def test_counts_follow_a_corrected_time_into_its_minute(device):
    store(device, 50, exact=False, payload={"t": 1})  # a webhook without Golioth's time
    result = store(
        device, -30, payload={"t": 1}
    )  # the pull's exact copy, 80 s earlier, a minute before

    assert result.corrected == 1
    assert (
        counted()
        == stored()
        == Counter({(device.integration_id, minute_start(T0 - timedelta(minutes=1))): 1})
    )


def test_counts_drop_the_readings_retention_deletes(device):
    store(device, *range(0, 600, 30))

    deleted = prune_telemetry(
        integration_id=device.integration_id, cutoff=T0 + timedelta(minutes=5), batch_size=3
    )

    assert deleted == 10
    assert counted() == stored()
    assert sum(counted().values()) == 10


def test_counts_drop_the_readings_of_a_deleted_device(device, make_device):
    other = make_device(device.integration, "d2")
    store(device, 0, 10, 70)
    store(other, 5)

    device.delete()

    assert counted() == stored() == Counter({(device.integration_id, minute_start(T0)): 1})


def test_count_readings_rebuilds_the_counts_from_the_readings(device):
    store(device, *range(0, 3 * 86_400, 3_000))  # three days: several hours per transaction
    # As after a restore with triggers off: some counts missing, some wrong, one stray.
    first, second = ReadingCount.objects.order_by("minute")[:2]
    first.delete()
    ReadingCount.objects.filter(pk=second.pk).update(readings=99)
    ReadingCount.objects.create(
        integration_id=device.integration_id, minute=T0 - timedelta(minutes=1), readings=5
    )

    out = StringIO()
    call_command("count_readings", stdout=out)

    assert counted() == stored()
    assert "hours of reading time" in out.getvalue()


def test_a_dropped_partition_takes_its_counts_with_it(device):
    if connection.vendor != "postgresql":
        pytest.skip("partitions are PostgreSQL's")
    from telemetry.partitioning import drop_partition, partitions

    store(device, 0, 60)
    store(device, 0, start=datetime(2031, 5, 1, tzinfo=UTC))  # years ahead: the default partition
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # as a commit would, before a DROP
    (partition,) = [p for p in partitions() if p.end and (p.start or T0) <= T0 < p.end]

    assert drop_partition(partition)

    assert counted() == stored()
    assert sum(counted().values()) == 1
