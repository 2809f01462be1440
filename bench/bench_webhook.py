"""Webhook throughput and latency against a bare one-INSERT Django view, same server, same run.

    .venv/bin/python bench/bench_webhook.py [--workers 2] [--threads 2] [--clients 4]
                                            [--duration 8] [--rounds 2]

Creates a throwaway PostgreSQL database (dropped again unless --keep-db), migrates it, adds one
integration with a webhook secret and 100 devices, starts gunicorn (gthread, keep-alive) on a
local port, and drives it with a load generator of its own (processes, keep-alive connections,
http.client). Each request is a distinct reading in Golioth's plain shape with `Ce-*` headers.

Prints requests/s and p50/p99 latency for the bare view and for the webhook (the best of
--rounds alternating rounds of each), their ratio, and both latencies at half the webhook's peak
rate. Design target (DESIGN.md): webhook >= 60% of the bare view's requests/s; p99 < 100 ms at
half that load.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent
DEVICES = 100
SECRET = "bench-webhook-secret-0123456789"


@dataclass
class Run:
    name: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")

    def line(self) -> str:
        return (
            f"{self.name:<28} {self.rate:>9.0f} req/s   p50 {self.percentile(0.50):6.2f} ms   "
            f"p99 {self.percentile(0.99):6.2f} ms   "
            f"({self.requests} requests, {self.errors} errors)"
        )


# --- set-up --------------------------------------------------------------------------------------


def prepare_database(args: argparse.Namespace) -> dict[str, str]:
    server = f"-h {args.pg_host} -p {args.pg_port} -U {args.pg_user}".split()
    subprocess.run(["dropdb", *server, "--if-exists", args.database], check=True)
    subprocess.run(["createdb", *server, args.database], check=True)
    from cryptography.fernet import Fernet

    env = dict(
        os.environ,
        DATABASE_URL=f"postgres://{args.pg_user}@{args.pg_host}:{args.pg_port}/{args.database}",
        DJANGO_SETTINGS_MODULE="bench.webhook_settings",
        SECRET_KEY="bench-only-secret-key",
        GSYNC_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(BASE),
    )
    setup = subprocess.run(
        [sys.executable, "-c", SETUP_SCRIPT],
        env=env,
        cwd=BASE,
        check=True,
        capture_output=True,
        text=True,
    )
    env["BENCH_WEBHOOK_PATH"] = setup.stdout.strip().splitlines()[-1]
    return env


SETUP_SCRIPT = f"""
import django
django.setup()
from django.core.management import call_command
from django.db import connection
from integrations.models import DeviceIntegration
from telemetry.models import Device
from bench.webhook_urls import BARE_TABLE

call_command("migrate", verbosity=0)
with connection.cursor() as cursor:
    cursor.execute(
        f"CREATE TABLE {{BARE_TABLE}} "
        "(id bigserial PRIMARY KEY, received_at timestamptz, body text)"
    )
integration = DeviceIntegration(name="bench", project_id="bench-project", webhook_enabled=True)
integration.set_api_key("bench-key")
integration.add_webhook_secret({SECRET!r})
integration.save()
Device.objects.bulk_create(
    Device(integration=integration, external_id=f"bench-{{i}}", name=f"bench-{{i}}")
    for i in range({DEVICES})
)
print(integration.webhook_path)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(args: argparse.Namespace, env: dict[str, str]) -> subprocess.Popen:
    args.port = args.port or free_port()
    server = subprocess.Popen(
        [
            str(BASE / ".venv" / "bin" / "gunicorn"),
            "gsync.wsgi",
            "--bind",
            f"127.0.0.1:{args.port}",
            "--workers",
            str(args.workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(args.threads),
            "--keep-alive",
            "30",
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=BASE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.poll() is None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=2)
            conn.request("HEAD", env["BENCH_WEBHOOK_PATH"])
            if conn.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit(f"gunicorn did not start on port {args.port} within 30 s")


# --- load ----------------------------------------------------------------------------------------


def client_loop(job: tuple) -> tuple[int, int, list[float], str]:
    """One load-generator process: keep-alive requests until the deadline, optionally paced."""
    port, path, client_id, deadline, interval = job
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies, errors, seq, sample = [], 0, 0, ""
    next_send = time.perf_counter()
    while True:
        now = time.perf_counter()
        if now >= deadline:
            break
        if interval and now < next_send:
            time.sleep(next_send - now)
        next_send += interval
        body, headers = reading(client_id, seq)
        seq += 1
        started = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            ok = response.status == 200
            if not ok and not sample:
                sample = f"{response.status} {answer[:200]!r}"
        except (OSError, http.client.HTTPException) as exc:
            sample = sample or repr(exc)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            ok = False
        latencies.append((time.perf_counter() - started) * 1000)
        errors += not ok
    return len(latencies), errors, latencies, sample


def reading(client_id: int, seq: int) -> tuple[bytes, dict[str, str]]:
    device = f"bench-{(client_id * 7919 + seq) % DEVICES}"
    now = datetime.now(UTC)
    body = json.dumps({"temp": 21.5, "client": client_id, "seq": seq}).encode()
    return body, {
        "Content-Type": "application/json",
        "Authorization": SECRET,
        "Ce-Id": f"{client_id}-{seq}",
        "Ce-Source": device,
        "Ce-Subject": "bench-project",
        "Ce-Type": "io.golioth.data.v1/.s/sensor",
        "Ce-Specversion": "1.0",
        "Ce-Time": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def drive(
    name: str, *, port: int, path: str, clients: int, seconds: float, rate: float | None = None
) -> Run:
    start = time.perf_counter()
    deadline = start + seconds
    interval = clients / rate if rate else 0.0
    jobs = [
        (port, path, c + int(start * 1000) % 100_000 * 100, deadline, interval)
        for c in range(clients)
    ]
    with multiprocessing.Pool(clients) as pool:
        results = pool.map(client_loop, jobs)
    elapsed = time.perf_counter() - start
    latencies = [ms for _, _, lat, _ in results for ms in lat]
    sample = next((r[3] for r in results if r[3]), "")
    run = Run(name, sum(r[0] for r in results), sum(r[1] for r in results), elapsed, latencies)
    if sample:
        print(f"{name}: first error: {sample}", file=sys.stderr)
    return run


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    env = prepare_database(args)
    server = start_server(args, env)
    try:
        hook, bare = env["BENCH_WEBHOOK_PATH"], "/bench/bare/"
        load = {"port": args.port, "clients": args.clients}
        drive("warm-up", path=hook, seconds=1, **load)
        drive("warm-up", path=bare, seconds=1, **load)
        bare_runs, hook_runs = [], []
        for _ in range(args.rounds):
            bare_runs.append(
                drive("bare view (1 INSERT)", path=bare, seconds=args.duration, **load)
            )
            hook_runs.append(drive("webhook", path=hook, seconds=args.duration, **load))
        best_bare = max(bare_runs, key=lambda r: r.rate)
        best_hook = max(hook_runs, key=lambda r: r.rate)
        half = best_hook.rate / 2
        half_hook = drive(
            f"webhook at {half:.0f} req/s", path=hook, seconds=args.duration, rate=half, **load
        )
        half_bare = drive(
            f"bare view at {half:.0f} req/s", path=bare, seconds=args.duration, rate=half, **load
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
        if not args.keep_db:
            subprocess.run(
                [
                    "dropdb",
                    "-h",
                    args.pg_host,
                    "-p",
                    str(args.pg_port),
                    "-U",
                    args.pg_user,
                    "--if-exists",
                    args.database,
                ],
                check=False,
            )
    report(args, bare_runs, hook_runs, best_bare, best_hook, half_hook, half_bare)


def report(args, bare_runs, hook_runs, best_bare, best_hook, half_hook, half_bare) -> None:
    print(
        f"gunicorn gthread: {args.workers} workers x {args.threads} threads; "
        f"{args.clients} keep-alive clients; {args.duration:g} s per run; "
        f"{os.cpu_count()} CPUs shared by server, PostgreSQL and load generator"
    )
    for run in [*bare_runs, *hook_runs]:
        print("  " + run.line())
    print("peak:")
    print("  " + best_bare.line())
    print("  " + best_hook.line())
    ratio = best_hook.rate / best_bare.rate
    print(f"webhook / bare view: {ratio:.0%} of the requests/s (target >= 60%)")
    print("at half the webhook's peak rate:")
    print("  " + half_hook.line())
    print("  " + half_bare.line())
    verdict = "meets" if half_hook.percentile(0.99) < 100 else "misses"
    print(
        f"webhook p99 at half load: {half_hook.percentile(0.99):.2f} ms "
        f"({verdict} the < 100 ms target)"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=2, help="threads per gunicorn worker")
    parser.add_argument("--clients", type=int, default=4, help="load-generator processes")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each view")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--database", default="gsync_bench_webhook")
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database after")
    return parser.parse_args()


if __name__ == "__main__":
    main()
