"""Webhook throughput and latency against a bare one-INSERT Django view, same server, same run.

    .venv/bin/python bench/bench_webhook.py [--workers 2] [--threads 2] [--clients 4]
                                            [--duration 8] [--rounds 2] [--ingest-workers 2]

Creates a throwaway PostgreSQL database (dropped again unless --keep-db), migrates it, adds two
integrations with a webhook secret and 100 devices each, one synchronous (webhookQueued off) and
one queued, starts gunicorn (gthread, keep-alive) on a local port, and drives it with a load
generator of its own (processes, keep-alive connections, http.client). Each request is a distinct
reading in Golioth's plain shape with `Ce-*` headers.

Prints requests/s and p50/p99 latency for the bare view and both webhook modes (the best of
--rounds alternating rounds of each, with nothing else running), their ratios, the synchronous
webhook's p99 at half its peak, then drives the queued webhook at 80% of the bare view's rate with
--ingest-workers workers running on the same CPUs and prints how long readings took to be stored
(each delivery's processed_at - received_at). Targets (issue 11): queued >= 80% and synchronous
>= 50% of the bare view; p99 < 100 ms at half load; readings visible p99 < 2 s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE))

from bench.figures import record  # noqa: E402

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
    sync_path, queued_path = setup.stdout.strip().splitlines()[-1].split()
    env["BENCH_WEBHOOK_PATH"], env["BENCH_QUEUED_PATH"] = sync_path, queued_path
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
paths = []
for name, queued in (("synchronous", False), ("queued", True)):
    integration = DeviceIntegration(
        name=name, project_id="bench-project", webhook_enabled=True,
        settings={{"webhookQueued": queued}},
    )
    integration.set_api_key("bench-key")
    integration.add_webhook_secret({SECRET!r})
    integration.save()
    Device.objects.bulk_create(
        Device(integration=integration, external_id=f"bench-{{i}}", name=f"bench-{{i}}")
        for i in range({DEVICES})
    )
    paths.append(integration.webhook_path)
print(" ".join(paths))
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
            ok = response.status in (200, 202)
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
        result = measure(args, env)
    finally:
        server.terminate()
        server.wait(timeout=30)
        if not args.keep_db:
            subprocess.run(
                ["dropdb", "-h", args.pg_host, "-p", str(args.pg_port), "-U", args.pg_user,
                 "--if-exists", args.database],
                check=False,
            )  # fmt: skip
    report(args, result)


def measure(args: argparse.Namespace, env: dict[str, str]) -> dict:
    paths = {
        "bare": "/bench/bare/",
        "synchronous": env["BENCH_WEBHOOK_PATH"],
        "queued": env["BENCH_QUEUED_PATH"],
    }
    load = {"port": args.port, "clients": args.clients}
    for path in paths.values():
        drive("warm-up", path=path, seconds=1, **load)
    runs: dict[str, list[Run]] = {name: [] for name in paths}
    labels = {"bare": "bare view (1 INSERT)", "synchronous": "webhook, synchronous",
              "queued": "webhook, queued (web only)"}  # fmt: skip
    # Peak rates with nothing else running: the web tier against the bare view.
    for _ in range(args.rounds):
        for name, path in paths.items():
            runs[name].append(drive(labels[name], path=path, seconds=args.duration, **load))
    best = {name: max(rs, key=lambda r: r.rate) for name, rs in runs.items()}
    half = best["synchronous"].rate / 2
    half_sync = drive(
        f"synchronous at {half:.0f} req/s", path=paths["synchronous"], seconds=args.duration,
        rate=half, **load,
    )  # fmt: skip
    # The whole queued system: web, ingest workers and PostgreSQL on the same CPUs, at 80% of the
    # bare view's rate; how long until each reading is stored (the delivery's processed_at).
    drain(env, workers=args.ingest_workers)
    target = best["bare"].rate * 0.8
    sql(env, "DELETE FROM gsync_heartbeats WHERE name = 'ingest'")
    workers = start_ingest_workers(env, args.ingest_workers)
    try:
        wait_until_ingesting(env)
        since = sql(env, "SELECT now()")
        paced = drive(
            f"queued at {target:.0f} req/s + {args.ingest_workers} ingest workers",
            path=paths["queued"], seconds=args.duration, rate=target, **load,
        )  # fmt: skip
        wait_for_drain(env, seconds=60)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=30)
    visible = visibility(env, since=since)
    return {"runs": runs, "best": best, "half_sync": half_sync, "paced": paced, "visible": visible}


def start_ingest_workers(env: dict[str, str], count: int) -> list[subprocess.Popen]:
    command = [sys.executable, "manage.py", "ingest_worker", "--verbosity", "0"]
    return [subprocess.Popen(command, env=env, cwd=BASE) for _ in range(count)]


def wait_until_ingesting(env: dict[str, str]) -> None:
    """Until a worker has beaten once (it beats when its loop starts), plus a second for the
    others: the visibility figure is not to include Django's start-up."""
    deadline = time.monotonic() + 60
    while sql(env, "SELECT count(*) FROM gsync_heartbeats WHERE name = 'ingest'") == "0":
        if time.monotonic() > deadline:
            raise SystemExit("no ingest worker started within 60 s")
        time.sleep(0.1)
    time.sleep(1.0)


def drain(env: dict[str, str], *, workers: int) -> None:
    """Store what the peak runs queued, so the paced run starts with an empty queue."""
    command = [sys.executable, "manage.py", "ingest_worker", "--once", "--verbosity", "0"]
    procs = [subprocess.Popen(command, env=env, cwd=BASE) for _ in range(workers)]
    for proc in procs:
        proc.wait()


def wait_for_drain(env: dict[str, str], *, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sql(env, "SELECT count(*) FROM webhook_deliveries WHERE outcome = 'queued'") == "0":
            return
        time.sleep(0.2)
    print(f"the queue was not drained within {seconds:g} s", file=sys.stderr)


def visibility(env: dict[str, str], *, since: str) -> dict[str, float]:
    """p50/p99/max of processed_at - received_at (ms) of the deliveries since `since`."""
    query = (
        "SELECT count(*), "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY processed_at - received_at), "
        "percentile_cont(0.99) WITHIN GROUP (ORDER BY processed_at - received_at), "
        "max(processed_at - received_at) "
        f"FROM webhook_deliveries WHERE received_at >= '{since}' AND outcome = 'processed'"
    )
    out = sql(env, f"SELECT row_to_json(t) FROM ({query}) t(n, p50, p99, worst)")
    row = json.loads(out)

    def ms(interval: str | None) -> float:
        if not interval:
            return float("nan")
        hours, minutes, seconds = interval.split(":")
        return (int(hours) * 3600 + int(minutes) * 60 + float(seconds)) * 1000

    return {"n": row["n"], "p50": ms(row["p50"]), "p99": ms(row["p99"]), "max": ms(row["worst"])}


def sql(env: dict[str, str], query: str) -> str:
    done = subprocess.run(
        ["psql", env["DATABASE_URL"], "-Atc", query], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def report(args: argparse.Namespace, result: dict) -> None:
    runs, best = result["runs"], result["best"]
    print(
        f"gunicorn gthread: {args.workers} workers x {args.threads} threads; "
        f"{args.clients} keep-alive clients; {args.duration:g} s per run; "
        f"{os.cpu_count()} CPUs shared by server, PostgreSQL and load generator"
    )
    for name_runs in runs.values():
        for run in name_runs:
            print("  " + run.line())
    print("peak:")
    for run in best.values():
        print("  " + run.line())
    bare = best["bare"].rate
    sync_ratio, queued_ratio = best["synchronous"].rate / bare, best["queued"].rate / bare
    print(f"synchronous / bare view: {sync_ratio:.0%} of the requests/s (target >= 50%)")
    print(f"queued / bare view: {queued_ratio:.0%} of the requests/s (target >= 80%)")
    half = result["half_sync"]
    print(f"synchronous p99 at half its peak: {half.percentile(0.99):.2f} ms (target < 100 ms)")
    paced, visible = result["paced"], result["visible"]
    print("  " + paced.line())
    print(
        f"readings visible after (received -> stored), {visible['n']} deliveries: "
        f"p50 {visible['p50']:.0f} ms, p99 {visible['p99']:.0f} ms, max {visible['max']:.0f} ms "
        "(target p99 < 2000 ms)"
    )
    record("webhook, queued (req/s)", best["queued"].rate, reference=bare,
           target=">= 80% of the bare view", met=queued_ratio >= 0.8)  # fmt: skip
    record("webhook, synchronous (req/s)", best["synchronous"].rate, reference=bare,
           target=">= 50% of the bare view", met=sync_ratio >= 0.5)  # fmt: skip
    record("webhook, synchronous: p99 at half its peak (ms)", half.percentile(0.99),
           target="< 100 ms", met=half.percentile(0.99) < 100)  # fmt: skip
    record(f"webhook, queued at {paced.rate:.0f} req/s: reading visible p99 (ms)",
           visible["p99"], target="< 2000 ms", met=visible["p99"] < 2000)  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=2, help="threads per gunicorn worker")
    parser.add_argument("--clients", type=int, default=4, help="load-generator processes")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each view")
    parser.add_argument(
        "--ingest-workers", type=int, default=2, help="ingest workers for the visibility run"
    )
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--database", default="gsync_bench_webhook")
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database after")
    return parser.parse_args()


if __name__ == "__main__":
    main()
