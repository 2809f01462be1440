"""Deduplicating ingest against a raw COPY of the same rows into the same table (PostgreSQL).

    .venv/bin/python bench/bench_ingest.py [--readings 200000] [--devices 1000] [--rounds 2]
        [--database-url postgres://postgres@127.0.0.1:5432/]

Creates a throwaway database on the server of --database-url (dropped afterwards), migrates it,
adds one integration and --devices devices, and builds --readings readings in memory. Each round
empties `device_telemetry_history` and times (a) a raw `COPY` of the finished rows (dedup keys and
JSON computed beforehand, not timed) and (b) `telemetry.ingest.ingest_readings` of the same
readings, which computes the keys, reconciles approximate times, inserts-or-ignores in batches and
moves `last_seen`; then (c) the same ingest again, where every reading is a duplicate. Prints each
round's rates and ratios (the three run back to back, so a busy machine slows them alike), then the
best rate of each over --rounds and the ratio ingest / COPY.

Targets (issue 11): ingest >= 60% of the raw COPY's rate, re-ingest >= 90%, in the same run.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_pull import setup_django, throwaway_database  # noqa: E402
from bench.figures import record  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/")
    args = parser.parse_args()
    if args.database_url == "sqlite":
        raise SystemExit("bench_ingest compares against PostgreSQL's COPY: give a PostgreSQL URL")
    with throwaway_database(args.database_url) as database_url:
        setup_django(database_url)
        measure(args)


def measure(args: argparse.Namespace) -> None:
    integration, activity, readings = prepare(args)
    rows = raw_rows(readings, integration_id=integration.pk, activity_id=activity.pk)
    best = {"copy": 0.0, "ingest": 0.0, "again": 0.0}
    for round_no in range(1, args.rounds + 1):
        empty_table()
        copy_rate = len(rows) / timed(lambda: raw_copy(rows))
        empty_table()
        ingest_rate, inserted = ingest_timed(readings, integration.pk, activity.pk)
        again_rate, again = ingest_timed(readings, integration.pk, activity.pk)
        assert inserted == len(readings) and again == 0, (inserted, again)
        print(
            f"round {round_no}: COPY {copy_rate:,.0f} rows/s, ingest {ingest_rate:,.0f} "
            f"readings/s ({ingest_rate / copy_rate:.0%}), ingest of duplicates "
            f"{again_rate:,.0f} readings/s ({again_rate / copy_rate:.0%})",
            flush=True,
        )
        best = {
            k: max(best[k], v)
            for k, v in (("copy", copy_rate), ("ingest", ingest_rate), ("again", again_rate))
        }
    print(f"\n{len(readings):,} readings, {args.devices:,} devices, best of {args.rounds}:")
    print(f"  raw COPY                  {best['copy']:>10,.0f} rows/s")
    print(f"  ingest_readings (new)     {best['ingest']:>10,.0f} readings/s")
    print(f"  ingest_readings (repeats) {best['again']:>10,.0f} readings/s")
    print(f"  ratio ingest / COPY       {best['ingest'] / best['copy']:>10.0%} (target >= 60%)")
    print(f"  ratio repeats / COPY      {best['again'] / best['copy']:>10.0%} (target >= 90%)")
    ingest, again = best["ingest"] / best["copy"], best["again"] / best["copy"]
    record(f"ingest {len(readings):,} new readings (rows/s)", best["ingest"],
           reference=best["copy"], target=">= 60% of COPY", met=ingest >= 0.6)  # fmt: skip
    record(f"re-ingest {len(readings):,} duplicates (rows/s)", best["again"],
           reference=best["copy"], target=">= 90% of COPY", met=again >= 0.9)  # fmt: skip


def prepare(args: argparse.Namespace):  # noqa: ANN201 - model instances and readings
    from integrations.models import ActivityLog, DeviceIntegration
    from telemetry.ingest import Reading
    from telemetry.models import Device

    integration = DeviceIntegration(name="bench", project_id="bench-project")
    integration.set_api_key("bench-key")
    integration.save()
    Device.objects.bulk_create(
        Device(integration=integration, external_id=f"{i:024x}", name=f"BENCH{i:05d}")
        for i in range(args.devices)
    )
    devices = list(Device.objects.values_list("pk", "external_id"))
    activity = ActivityLog.objects.start(integration, activity_type="backfill")
    rng = random.Random(0)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    readings = []
    for n in range(args.readings):
        pk, external_id = devices[n % len(devices)]
        payload = {
            "temp": round(rng.gauss(21.5, 2), 2),
            "hum": round(rng.uniform(30, 60), 1),
            "seq": n // len(devices),
        }
        moment = start + timedelta(microseconds=n * 431_000 + rng.randrange(1000))
        readings.append(Reading(pk, external_id, moment, payload))
    return integration, activity, readings


def raw_rows(readings: list, *, integration_id: int, activity_id: int) -> list[tuple]:
    from telemetry.keys import canonical_json, dedup_key

    now = datetime.now(UTC)
    return [
        (
            r.device_pk,
            integration_id,
            r.path,
            canonical_json(r.payload).decode(),
            r.timestamp,
            now,
            "sync",
            True,
            activity_id,
            dedup_key(
                integration_id=integration_id,
                device_external_id=r.device_external_id,
                timestamp=r.timestamp,
                payload=r.payload,
            ),
        )
        for r in readings
    ]


def raw_copy(rows: list[tuple]) -> None:
    from django.db import connection, transaction

    from telemetry.ingest import COLUMNS

    sql = f"COPY device_telemetry_history ({', '.join(COLUMNS)}) FROM STDIN"
    with transaction.atomic(), connection.cursor() as cursor:
        with cursor.cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)


def ingest_timed(readings: list, integration_id: int, activity_id: int) -> tuple[float, int]:
    from telemetry.ingest import ingest_readings

    result = None

    def run() -> None:
        nonlocal result
        result = ingest_readings(
            readings, integration_id=integration_id, source="sync", activity_id=activity_id
        )

    seconds = timed(run)
    return len(readings) / seconds, result.inserted


def empty_table() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE device_telemetry_history")
        cursor.execute("UPDATE devices SET last_seen = NULL")
        cursor.execute("VACUUM ANALYZE device_telemetry_history")


def timed(work) -> float:  # noqa: ANN001
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
