"""Every admin page staff use, at millions of rows (PostgreSQL).

    .venv/bin/python bench/bench_admin.py [--readings 5000000] [--activity 100000]
        [--devices 10000] [--deliveries 100000] [--repeat 5] [--months 0]
        [--database-url postgres://postgres@127.0.0.1:5432/]

Creates a throwaway database on the server of --database-url (dropped afterwards), migrates it,
fills `devices`, `device_telemetry_history`, `integration_activity_log` and `webhook_deliveries`
with generate_series (not timed) with triggers off, rebuilds the per-minute reading counts
(telemetry.counts, as `manage.py count_readings` does; timed), ANALYZEs, then renders each
page (every changelist, the dashboard at each range, an integration's control panel, a device, a
reading, an entry, a delivery) as a logged-in superuser through Django's test client (the full
view: queries, template, no network) --repeat times and prints the median, the slowest single SQL
query of the page and the number of queries. For scale, it also times the plain `SELECT COUNT(*)`
of the big tables. `--months N` spreads the readings over the last N months, in partitions made
as on a database partitioned N months ago (telemetry.partitioning); by default one reading a
second, newest now.

Targets (issue 11): every page's median under 300 ms and no query over 100 ms at 5M readings,
100k activity entries and 10k devices.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_pull import setup_django, throwaway_database  # noqa: E402
from bench.figures import record  # noqa: E402

TARGET_MS = 300
QUERY_TARGET_MS = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=5_000_000)
    parser.add_argument("--activity", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--months", type=int, default=0, help="0: one reading a second")
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

    from integrations.models import ActivityLog, DeviceIntegration, WebhookDelivery
    from telemetry.models import Device, TelemetryRecord

    integrations = []
    for name in ("berlin", "hamburg", "munich"):
        integration = DeviceIntegration(name=name, project_id=f"{name}-project")
        integration.set_api_key("bench-key")
        integration.save()
        integrations.append(integration)
    started = time.perf_counter()
    sizes = {
        "n": 0,
        "devices": args.devices,
        "first_integration": integrations[0].pk,
        "step": (args.months * 30.44 * 86_400 or args.readings) / max(args.readings, 1),
    }
    if args.months:
        partition_months_back(args.months)
    with connection.cursor() as cursor:
        cursor.execute(DEVICES_SQL, sizes)
        sizes["first"] = Device.objects.order_by("pk").values_list("pk", flat=True).first()
        # The rows are made consistent: skip the foreign-key triggers, and build each table's
        # plain indexes once after its rows instead of row by row (minutes at 5M rows).
        cursor.execute("SET session_replication_role = replica")
        for sql, n in (
            (TELEMETRY_SQL, args.readings),
            (ACTIVITY_SQL, args.activity),
            (DELIVERIES_SQL, args.deliveries),
        ):
            table = sql.split()[2]
            cursor.execute(PLAIN_INDEXES_SQL, [table])
            indexes = cursor.fetchall()
            for name, _ in indexes:
                cursor.execute(f'DROP INDEX "{name}"')
            cursor.execute(sql, sizes | {"n": n})
            for _, definition in indexes:
                # A partitioned table's index reads "ON ONLY parent": built so, it would not
                # cascade to the partitions.
                cursor.execute(definition.replace(" ON ONLY ", " ON "))
        cursor.execute("SET session_replication_role = DEFAULT")
    print(
        f"filled {args.devices:,} devices, {args.readings:,} readings, {args.activity:,} "
        f"activity entries and {args.deliveries:,} deliveries in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    count_readings()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    device = Device.objects.order_by("pk")[args.devices // 2]
    return {
        "integration": integrations[1].pk,
        "device": device.pk,
        "device_id": device.external_id,
        "reading": TelemetryRecord.objects.order_by("-device_timestamp", "-id").first().pk,
        "entry": ActivityLog.objects.order_by("-started_at", "-id").first().pk,
        "delivery": WebhookDelivery.objects.order_by("-received_at", "-id").first().pk,
    }


def count_readings() -> None:
    """The per-minute counts (telemetry.counts) of the readings filled with triggers off, as
    `manage.py count_readings` rebuilds them after an upgrade or a restore."""
    from telemetry.counts import recount

    started = time.perf_counter()
    hours = recount()
    print(f"counted the readings of {hours:,} hours in {time.perf_counter() - started:.0f} s")


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


# Indexes that no constraint owns (the unique and primary keys stay, and are checked).
PLAIN_INDEXES_SQL = """
SELECT indexname, indexdef FROM pg_indexes
WHERE tablename = %s AND indexname NOT IN (SELECT conname FROM pg_constraint)
"""

# Device i belongs to integration i % 3; a tenth never reported, the rest within the last day.
DEVICES_SQL = """
INSERT INTO devices
    (integration_id, external_id, name, hardware_ids, tag_ids, cohort_id, blueprint_id, enabled,
     last_report, last_seen, status, firmware_version, firmware, metadata, created_at, updated_at)
SELECT %(first_integration)s + (g %% 3), lpad(to_hex(g), 24, '0'), 'sensor-' || g,
       '[]'::jsonb, jsonb_build_array('floor-' || (g %% 8)), '', '', true,
       CASE WHEN g %% 10 = 0 THEN NULL ELSE now() - make_interval(secs => g) END,
       CASE WHEN g %% 10 = 0 THEN NULL ELSE now() - make_interval(secs => g) END,
       CASE WHEN g %% 10 = 0 THEN 'never' WHEN g %% 7 = 0 THEN 'offline' ELSE 'online' END,
       '1.' || (g %% 5), '{}'::jsonb, '{}'::jsonb, now(), now()
FROM generate_series(0, %(devices)s - 1) AS g
"""

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
     devices_seen, readings_fetched, readings_inserted, readings_duplicate, api_calls, deliveries,
     retries, response_time_ms, started_at, completed_at, metadata)
SELECT %(first_integration)s + (g %% 3),
       CASE WHEN g %% 50 = 0 THEN 'webhook_received' ELSE 'sync_import' END,
       CASE WHEN g %% 97 = 0 THEN 'failed' ELSE 'success' END, 'incoming', 'schedule',
       'Pulled ' || (g %% 500) || ' readings', '', 100, g %% 500, g %% 400, g %% 100, 3,
       CASE WHEN g %% 50 = 0 THEN 5 ELSE 0 END, 0,
       g %% 5000, now() - make_interval(mins => %(n)s - g),
       now() - make_interval(mins => %(n)s - g), '{}'::jsonb
FROM generate_series(1, %(n)s) AS g
"""

# One delivery every ten seconds, nearly all processed, a few rejected.
DELIVERIES_SQL = """
INSERT INTO webhook_deliveries
    (integration_id, received_at, headers, body, content_type, remote_addr, outcome, error,
     traceback, readings_stored, readings_duplicate, processed_at, attempts)
SELECT %(first_integration)s + (g %% 3), now() - make_interval(secs => 10 * (%(n)s - g)),
       '{"Content-Type": "application/json"}'::jsonb,
       convert_to('{"temp": ' || (g %% 40) || '}', 'UTF8'), 'application/json', '10.0.0.1',
       CASE WHEN g %% 101 = 0 THEN 'rejected' ELSE 'processed' END,
       CASE WHEN g %% 101 = 0 THEN 'body is not JSON' ELSE '' END, '', 1, 0,
       now() - make_interval(secs => 10 * (%(n)s - g)), 1
FROM generate_series(1, %(n)s) AS g
"""


def pages(ids: dict[str, object]) -> list[tuple[str, str]]:
    admin = "/admin/"
    telemetry, activity = f"{admin}telemetry/telemetryrecord/", f"{admin}integrations/activitylog/"
    devices, deliveries = f"{admin}telemetry/device/", f"{admin}integrations/webhookdelivery/"
    integrations = f"{admin}integrations/deviceintegration/"
    return [
        ("dashboard", admin),
        ("dashboard: 6 h", f"{admin}?range=6h"),
        ("dashboard: 7 d", f"{admin}?range=7d"),
        ("integrations", integrations),
        ("integration: control panel", f"{integrations}{ids['integration']}/change/"),
        ("readings: newest first", telemetry),
        ("readings: page 50", f"{telemetry}?p=50"),
        ("readings: one integration", f"{telemetry}?integration__id__exact={ids['integration']}"),
        ("readings: one device", f"{telemetry}?device={ids['device']}"),
        ("readings: search a device id", f"{telemetry}?q={ids['device_id']}"),
        ("readings: source = webhook", f"{telemetry}?source__exact=webhook"),
        ("readings: date drill-down (year)", f"{telemetry}?device_timestamp__year=2026"),
        ("reading: one", f"{telemetry}{ids['reading']}/change/"),
        ("devices", devices),
        ("devices: one integration", f"{devices}?integration__id__exact={ids['integration']}"),
        ("devices: status = offline", f"{devices}?status__exact=offline"),
        ("devices: search", f"{devices}?q=sensor-4242"),
        ("device: one", f"{devices}{ids['device']}/change/"),
        ("activity: newest first", activity),
        ("activity: one integration", f"{activity}?integration__id__exact={ids['integration']}"),
        ("activity: status = failed", f"{activity}?status__exact=failed"),
        ("activity: type = webhook", f"{activity}?activity_type__exact=webhook_received"),
        ("activity: search message", f"{activity}?q=Pulled+499"),
        ("activity: one entry", f"{activity}{ids['entry']}/change/"),
        ("deliveries: newest first", deliveries),
        (
            "deliveries: one integration",
            f"{deliveries}?integration__id__exact={ids['integration']}",
        ),
        ("deliveries: outcome = rejected", f"{deliveries}?outcome__exact=rejected"),
        ("delivery: one", f"{deliveries}{ids['delivery']}/change/"),
    ]


class QueryTimer:
    """The slowest SQL query of a page view (connection.execute_wrapper), and how many ran."""

    def __init__(self) -> None:
        self.slowest_ms, self.count, self.slowest_sql = 0.0, 0, ""

    def __call__(self, execute, sql, params, many, context):  # noqa: ANN001, ANN204
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            self.count += 1
            if elapsed > self.slowest_ms:
                self.slowest_ms, self.slowest_sql = elapsed, sql


def measure(args: argparse.Namespace, ids: dict[str, object]) -> None:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    client = Client()
    client.force_login(User.objects.create_superuser("bench", "bench@example.com", "bench"))
    print(f"\nmedian of {args.repeat} page views (target < {TARGET_MS} ms, each query < "
          f"{QUERY_TARGET_MS} ms):")  # fmt: skip
    print(f"  {'page':<36} {'median':>8} {'slowest query':>14} {'queries':>8}")
    medians, slowest = [], []
    for label, url in pages(ids):
        timings, timer = [], QueryTimer()
        for _ in range(args.repeat):
            started = time.perf_counter()
            with connection.execute_wrapper(timer):
                response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        median = statistics.median(timings)
        ok = median < TARGET_MS and timer.slowest_ms < QUERY_TARGET_MS
        print(f"  {label:<36} {median:>5.0f} ms {timer.slowest_ms:>11.0f} ms "
              f"{timer.count // args.repeat:>8}  {'ok' if ok else 'SLOW'}", flush=True)  # fmt: skip
        if not ok and os.environ.get("BENCH_SHOW_SQL"):
            print(f"      slowest: {timer.slowest_sql[:300]}")
        medians.append(median)
        slowest.append(timer.slowest_ms)
    record(f"admin: slowest of {len(medians)} pages, median (ms)", max(medians),
           target=f"< {TARGET_MS} ms", met=max(medians) < TARGET_MS)  # fmt: skip
    record("admin: slowest single query (ms)", max(slowest),
           target=f"< {QUERY_TARGET_MS} ms", met=max(slowest) < QUERY_TARGET_MS)  # fmt: skip
    with connection.cursor() as cursor:
        for table in ("device_telemetry_history", "integration_activity_log"):
            started = time.perf_counter()
            cursor.execute(f"SELECT COUNT(*) FROM {table}")  # noqa: S608 - fixed names
            elapsed = (time.perf_counter() - started) * 1000
            print(f"  for scale: SELECT COUNT(*) FROM {table:<26} {elapsed:>6.0f} ms")


if __name__ == "__main__":
    main()
