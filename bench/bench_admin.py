"""Admin changelists of the telemetry and activity tables at millions of rows (PostgreSQL).

    .venv/bin/python bench/bench_admin.py [--readings 5000000] [--activity 5000000]
        [--devices 1000] [--repeat 5] [--months 0] [--explain]
        [--database-url postgres://postgres@127.0.0.1:5432/]

Creates a throwaway database on the server of --database-url (dropped afterwards), migrates it,
fills `device_telemetry_history` and `integration_activity_log` with generate_series (not timed),
ANALYZEs, then renders each changelist page as a logged-in superuser through Django's test client
(the full view: queries, template, no network) --repeat times and prints the median. For scale,
it also times the plain `SELECT COUNT(*)` each page view would have run without the capped count.
`--months N` spreads the readings over the last N months, in partitions made as on a database
partitioned N months ago (telemetry.partitioning); `--explain` prints, per telemetry page, the
scans of the plan of its slowest query (which partitions, which indexes).

Design target (DESIGN.md): telemetry and activity changelists under 300 ms with 5M rows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_pull import setup_django, throwaway_database  # noqa: E402
from bench.figures import record  # noqa: E402

TARGET_MS = 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=5_000_000)
    parser.add_argument("--activity", type=int, default=5_000_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--months", type=int, default=0, help="0: one reading a second")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/")
    args = parser.parse_args()
    if args.database_url == "sqlite":
        raise SystemExit("bench_admin measures PostgreSQL: give a PostgreSQL URL")
    os.environ["ALLOWED_HOSTS"] = "testserver"
    with throwaway_database(args.database_url) as database_url:
        setup_django(database_url)
        ids = fill(args)
        measure(args, ids)


def fill(args: argparse.Namespace) -> dict[str, object]:
    from django.db import connection

    from integrations.models import DeviceIntegration
    from telemetry.models import Device

    integrations = []
    for name in ("berlin", "hamburg", "munich"):
        integration = DeviceIntegration(name=name, project_id=f"{name}-project")
        integration.set_api_key("bench-key")
        integration.save()
        integrations.append(integration)
    Device.objects.bulk_create(
        Device(integration=integrations[i % 3], external_id=f"{i:024x}", name=f"sensor-{i}")
        for i in range(args.devices)
    )
    first_device = Device.objects.order_by("pk").values_list("pk", flat=True).first()
    if args.months:
        partition_months_back(args.months)
    span = args.months * 30.44 * 86_400 or args.readings
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            TELEMETRY_SQL,
            {
                "n": args.readings,
                "devices": args.devices,
                "first": first_device,
                "first_integration": integrations[0].pk,
                "step": span / args.readings,
            },
        )
        cursor.execute(ACTIVITY_SQL, {"n": args.activity, "first_integration": integrations[0].pk})
        cursor.execute("ANALYZE")
    print(
        f"filled {args.readings:,} readings and {args.activity:,} activity entries in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    device = Device.objects.order_by("pk")[args.devices // 2]
    return {"integration": integrations[1].pk, "device": device.pk, "device_id": device.external_id}


def partition_months_back(months: int) -> None:
    """The partitions of a database partitioned `months` ago: its initial partition (empty
    here) dropped by retention since, one partition a month from then on."""
    from django.db import connection
    from django.utils import timezone

    from telemetry.partitioning import INITIAL, add_months, ensure_partitions, month_start

    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {INITIAL}")
    for back in range(months, -1, -1):
        ensure_partitions(now=add_months(month_start(timezone.now()), -back))


# Device i belongs to integration i % 3 (as created above); one reading every `step` seconds
# (one a second unless --months), newest now.
TELEMETRY_SQL = """
INSERT INTO device_telemetry_history
    (device_id, integration_id, path, telemetry, device_timestamp, received_at, source,
     time_exact, dedup_key)
SELECT %(first)s + (g %% %(devices)s), %(first_integration)s + ((g %% %(devices)s) %% 3), 'sensor',
       jsonb_build_object('temp', g %% 40, 'humidity', g %% 100, 'seq', g),
       now() - make_interval(secs => (%(n)s - g) * %(step)s), now(),
       CASE WHEN g %% 10 = 0 THEN 'webhook' ELSE 'sync' END, true, md5(g::text)::uuid
FROM generate_series(1, %(n)s) AS g
"""

# One entry a minute per integration, mostly sync imports, a few failures.
ACTIVITY_SQL = """
INSERT INTO integration_activity_log
    (integration_id, activity_type, status, direction, trigger, message, error_message,
     devices_seen, readings_fetched, readings_inserted, readings_duplicate, api_calls, retries,
     deliveries, response_time_ms, started_at, completed_at, metadata)
SELECT %(first_integration)s + (g %% 3),
       CASE WHEN g %% 50 = 0 THEN 'webhook_received' ELSE 'sync_import' END,
       CASE WHEN g %% 97 = 0 THEN 'failed' ELSE 'success' END, 'incoming', 'schedule',
       'Pulled ' || (g %% 500) || ' readings', '', 100, g %% 500, g %% 400, g %% 100, 3, 0, 0,
       g %% 5000, now() - make_interval(mins => %(n)s - g),
       now() - make_interval(mins => %(n)s - g), '{}'::jsonb
FROM generate_series(1, %(n)s) AS g
"""


def pages(ids: dict[str, object]) -> list[tuple[str, str]]:
    telemetry, activity = "/admin/telemetry/telemetryrecord/", "/admin/integrations/activitylog/"
    return [
        ("telemetry: newest first", telemetry),
        ("telemetry: page 50", f"{telemetry}?p=50"),
        ("telemetry: one integration", f"{telemetry}?integration__id__exact={ids['integration']}"),
        ("telemetry: one device", f"{telemetry}?device={ids['device']}"),
        ("telemetry: search a device id", f"{telemetry}?q={ids['device_id']}"),
        ("telemetry: source = webhook", f"{telemetry}?source__exact=webhook"),
        ("telemetry: date drill-down (year)", f"{telemetry}?device_timestamp__year=2026"),
        ("activity: newest first", activity),
        ("activity: one integration", f"{activity}?integration__id__exact={ids['integration']}"),
        ("activity: status = failed", f"{activity}?status__exact=failed"),
        ("activity: type = webhook", f"{activity}?activity_type__exact=webhook_received"),
        ("activity: search message", f"{activity}?q=Pulled+499"),
    ]


def measure(args: argparse.Namespace, ids: dict[str, object]) -> None:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    client = Client()
    client.force_login(User.objects.create_superuser("bench", "bench@example.com", "bench"))
    print(f"\nmedian of {args.repeat} page views (target < {TARGET_MS} ms):")
    medians: list[float] = []
    for label, url in pages(ids):
        timings = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        median = statistics.median(timings)
        verdict = "ok" if median < TARGET_MS else "SLOW"
        print(f"  {label:<36} {median:>8.0f} ms  {verdict}", flush=True)
        medians.append(median)
        if args.explain and label.startswith("telemetry"):
            explain(client, url)
    record(f"admin: slowest of {len(medians)} changelists, median (ms)", max(medians),
           target=f"< {TARGET_MS} ms", met=max(medians) < TARGET_MS)  # fmt: skip
    with connection.cursor() as cursor:
        for table in ("device_telemetry_history", "integration_activity_log"):
            started = time.perf_counter()
            cursor.execute(f"SELECT COUNT(*) FROM {table}")  # noqa: S608 - fixed names
            elapsed = (time.perf_counter() - started) * 1000
            print(f"  for scale: SELECT COUNT(*) FROM {table:<26} {elapsed:>6.0f} ms")


def explain(client: Any, url: str) -> None:
    """The scans in the plan of the page's slowest query on the readings (EXPLAIN ANALYZE)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    readings = [q for q in queries.captured_queries if "device_telemetry_history" in q["sql"]]
    slowest = max(readings, key=lambda q: float(q["time"]))
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF) {slowest['sql']}")
        plan = [line for (line,) in cursor.fetchall()]
    scans = [line.strip() for line in plan if "Scan" in line or "Append" in line]
    print(f"      slowest query {float(slowest['time']) * 1000:.0f} ms; " + "; ".join(scans[:6]))
    if len(scans) > 6:
        print(f"      ... {len(scans) - 6} more scans")


if __name__ == "__main__":
    main()
