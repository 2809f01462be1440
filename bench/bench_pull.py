"""Pull throughput, API cost and memory: one `sync_integration` backfill against the simulator.

    .venv/bin/python bench/bench_pull.py [--devices 1000] [--readings 100000] [--latency 0.15]
        [--rps 10] [--database-url postgres://postgres@127.0.0.1:5432/] [--memory-check]

Starts the Golioth simulator in a subprocess (bench/pull_simulator.py: its memory is not ours),
seeded with --readings readings over --devices devices in the last day; creates a throwaway
database (on the PostgreSQL server of --database-url, dropped afterwards; `--database-url sqlite`
for a temporary SQLite file), migrates it, adds one integration limited to --rps requests/s, runs
one backfill of the whole day and prints: readings/s, API calls against the budget
ceil(devices/100) + ceil(readings/100) + 1, the wall time against the rate-limit floor
(API calls / rps), and the peak RSS of this (the syncing) process.

--memory-check runs 100k and 1M readings (each in a fresh process, --latency 0, --rps 1000) and
prints both peaks and their ratio.

Design targets (DESIGN.md): the budget above; with 150 ms per call and 10 requests/s a 100k
backfill within 1.2x of the floor; a 1M backfill under 200 MB RSS, and 10x the data < 1.3x
the memory.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

BASE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE))

from bench.figures import record  # noqa: E402


def main() -> None:
    args = parse_args()
    if args.memory_check:
        memory_check(args)
        return
    result = run_once(args)
    if args.json:
        print(json.dumps(result))
    else:
        report(result, args)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--latency", type=float, default=0.15, help="seconds per API call")
    parser.add_argument("--rps", type=float, default=10.0, help="the client's request limit")
    parser.add_argument(
        "--database-url",
        default="postgres://postgres@127.0.0.1:5432/",
        help="PostgreSQL server for a throwaway database, or 'sqlite'",
    )
    parser.add_argument("--memory-check", action="store_true")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


# --- one run -------------------------------------------------------------------------------------


def run_once(args: argparse.Namespace) -> dict:
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    start = end - timedelta(days=1)
    with throwaway_database(args.database_url) as database_url:
        setup_django(database_url)
        simulator, ready = start_simulator(args, start=start, end=end)
        try:
            result = sync_and_measure(args, ready, start=start, end=end)
        finally:
            simulator.stdin.close()
            simulator.wait(timeout=30)
    result.update(
        vendor=database_url.split(":")[0],
        seeded=ready["readings"],
        rps=args.rps,
        latency=args.latency,
        devices=args.devices,
    )
    return result


class throwaway_database:  # noqa: N801 - used as a context manager
    def __init__(self, url: str) -> None:
        self.url = url
        self.name = f"gsync_bench_pull_{os.getpid()}"
        self.tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> str:
        if self.url == "sqlite":
            self.tmp = tempfile.TemporaryDirectory()
            return f"sqlite:///{self.tmp.name}/bench.sqlite3"
        subprocess.run(["createdb", *self._server(), self.name], check=True)
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}/{self.name}"

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()
            return
        from django.db import connections

        connections.close_all()
        subprocess.run(["dropdb", *self._server(), "--if-exists", self.name], check=True)

    def _server(self) -> list[str]:
        parts = urlsplit(self.url)
        return [
            "-h",
            parts.hostname or "127.0.0.1",
            "-p",
            str(parts.port or 5432),
            "-U",
            parts.username or "postgres",
        ]


def setup_django(database_url: str) -> None:
    from cryptography.fernet import Fernet

    os.environ.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="gsync.settings",
        SECRET_KEY="bench-only-secret-key",
        GSYNC_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        # The simulator listens on 127.0.0.1, which gsync refuses unless told (issue 9).
        GSYNC_API_HOSTS="127.0.0.1",
        GSYNC_ALLOW_PRIVATE_API_HOSTS="1",
        LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def start_simulator(
    args: argparse.Namespace, *, start: datetime, end: datetime
) -> tuple[subprocess.Popen, dict]:
    command = [
        sys.executable,
        str(BASE / "bench" / "pull_simulator.py"),
        "--devices",
        str(args.devices),
        "--readings",
        str(args.readings),
        "--latency",
        str(args.latency),
        "--start",
        start.isoformat(),
        "--end",
        end.isoformat(),
    ]
    simulator = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = simulator.stdout.readline()
    if not line:
        raise SystemExit("the simulator did not start")
    return simulator, json.loads(line)


def sync_and_measure(
    args: argparse.Namespace, ready: dict, *, start: datetime, end: datetime
) -> dict:
    from integrations.models import DeviceIntegration
    from integrations.pull.sync import sync_integration
    from telemetry.models import TelemetryRecord

    integration = DeviceIntegration(
        name="bench",
        project_id=ready["project_id"],
        base_url=ready["base_url"],
        settings={"maxRequestsPerSecond": args.rps},
    )
    integration.set_api_key(ready["api_key"])
    integration.save()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    outcome = sync_integration(
        integration,
        trigger="manual",
        force=True,
        since=start,
        until=end + timedelta(seconds=1),
        now=end + timedelta(minutes=1),
    )
    seconds = time.perf_counter() - started
    return {
        "status": str(outcome.status),
        "error": outcome.error,
        "seconds": seconds,
        "fetched": outcome.fetched,
        "inserted": outcome.inserted,
        "stored": TelemetryRecord.objects.count(),
        "api_calls": outcome.api_calls,
        "retries": outcome.retries,
        "rss_before_mb": rss_before / 1024,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def report(r: dict, args: argparse.Namespace) -> None:
    budget = math.ceil(r["devices"] / 100) + math.ceil(r["seeded"] / 100) + 1
    floor = r["api_calls"] / r["rps"]
    print(
        f"pull of {r['seeded']:,} readings from {r['devices']:,} devices "
        f"({r['vendor']}, {r['latency'] * 1000:.0f} ms per call, {r['rps']:g} req/s limit)"
    )
    print(f"  status        {r['status']} {r['error']}".rstrip())
    print(
        f"  stored        {r['stored']:,} rows (fetched {r['fetched']:,}, "
        f"inserted {r['inserted']:,})"
    )
    print(f"  throughput    {r['fetched'] / r['seconds']:,.0f} readings/s")
    print(f"  API calls     {r['api_calls']:,} (budget {budget:,}; retries {r['retries']})")
    print(
        f"  wall time     {r['seconds']:.1f} s; rate-limit floor {floor:.1f} s "
        f"-> {r['seconds'] / floor:.2f}x (target <= 1.2x)"
    )
    print(
        f"  peak RSS      {r['peak_rss_mb']:.0f} MB (before the sync: {r['rss_before_mb']:.0f} MB)"
    )
    over = r["seconds"] / floor
    size = f"backfill {r['seeded']:,} readings"
    record(f"{size}: wall time (s)", r["seconds"], reference=floor,
           target="<= 1.2x the rate-limit floor", met=over <= 1.2)  # fmt: skip
    record(f"{size}: API calls", r["api_calls"], reference=budget,
           target="<= the page budget", met=r["api_calls"] <= budget * 1.01)  # fmt: skip
    record(f"{size}: peak RSS (MB)", r["peak_rss_mb"], target="< 200 MB",
           met=r["peak_rss_mb"] < 200)  # fmt: skip


# --- memory --------------------------------------------------------------------------------------


def memory_check(args: argparse.Namespace) -> None:
    peaks = {}
    for readings in (100_000, 1_000_000):
        command = [
            sys.executable,
            __file__,
            "--json",
            "--devices",
            str(args.devices),
            "--readings",
            str(readings),
            "--latency",
            "0",
            "--rps",
            "1000",
            "--database-url",
            args.database_url,
        ]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        peaks[readings] = result["peak_rss_mb"]
        print(
            f"{readings:>9,} readings: {result['status']}, {result['stored']:,} stored in "
            f"{result['seconds']:.0f} s ({result['fetched'] / result['seconds']:,.0f}/s), "
            f"peak RSS {result['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    ratio = peaks[1_000_000] / peaks[100_000]
    print(f"10x the data costs {ratio:.2f}x the memory (target < 1.3x; 1M peak target < 200 MB)")


if __name__ == "__main__":
    main()
