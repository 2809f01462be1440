"""Memory of the readings export (CSV and JSON lines) at a million rows (PostgreSQL).

    .venv/bin/python bench/bench_export.py [--readings 1000000] [--database-url postgres://...]

Creates a throwaway database (dropped afterwards), fills it as bench_admin does (one reading a
second, newest now; not timed), then streams the readings export through Django's test client as
a logged-in superuser: first the newest tenth (`?from=<n/10>s`), then every row, in each format.
It prints rows, bytes, seconds and the process's peak RSS after each: a streamed export costs one
chunk of rows, so ten times the rows must leave the peak where it was (target: < 1.3x).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_admin import fill  # noqa: E402
from bench.bench_pull import setup_django, throwaway_database  # noqa: E402
from bench.figures import record  # noqa: E402

TARGET_RATIO = 1.3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/")
    args = parser.parse_args()
    if args.database_url == "sqlite":
        raise SystemExit("bench_export measures PostgreSQL: give a PostgreSQL URL")
    os.environ["ALLOWED_HOSTS"] = "testserver"
    with throwaway_database(args.database_url) as database_url:
        setup_django(database_url)
        # No activity entries: bench_admin's ACTIVITY_SQL predates the deliveries column.
        fill(argparse.Namespace(readings=args.readings, activity=0, devices=1000))
        measure(args.readings)


def measure(readings: int) -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    client = Client()
    client.force_login(User.objects.create_superuser("bench", "bench@example.com", "bench"))
    peaks = {}
    for fmt in ("csv", "jsonl"):
        for label, query in (
            (f"newest {readings // 10:,}", f"?from={readings // 10}s"),
            ("all", ""),
        ):
            started = time.perf_counter()
            response = client.get(f"/admin/telemetry/telemetryrecord/export/{fmt}/{query}")
            rows = size = 0
            for chunk in response.streaming_content:
                size += len(chunk)
                rows += chunk.count(b"\n")
            elapsed = time.perf_counter() - started
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            peaks[(fmt, label)] = peak
            print(
                f"  {fmt:<5} {label:<14} {rows:>10,} lines {size / 1e6:>8.1f} MB "
                f"{elapsed:>6.1f} s {rows / elapsed:>9,.0f} lines/s  peak RSS {peak:>6.0f} MB",
                flush=True,
            )
    small, large = peaks[("csv", f"newest {readings // 10:,}")], peaks[("jsonl", "all")]
    ratio = large / small
    print(f"peak RSS, all rows in both formats / the newest tenth in CSV: {ratio:.2f}x")
    record(f"export: peak RSS of {readings:,} rows / a tenth", ratio,
           target=f"< {TARGET_RATIO}x", met=ratio < TARGET_RATIO)  # fmt: skip


if __name__ == "__main__":
    main()
