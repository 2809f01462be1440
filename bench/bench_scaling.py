"""Several machines (issue 11 point 4): per-node figures of gsync's deployment, no faults.

    .venv/bin/python bench/bench_scaling.py [--integrations 4] [--devices 100]
                                            [--readings-per-device 100] [--clients 4]

The soak's set-up (bench/soak) without its faults: a PostgreSQL cluster of its own, two web
processes (gunicorn, one gthread worker of 4 threads each), two ingest workers and two qclusters
on the Redis broker, each its own process group as on its own machine. `--integrations` Golioth
simulators (one project each) hold the same fleet the webhooks push: each reading is stored in
its simulator's stream and POSTed (the inject-metadata envelope the integration page's pipeline
sends) by `--clients` load-generator processes spread over both web processes, while both
qclusters pull every integration at once; the ingest workers store what the webhooks queued,
part of it already pulled (duplicates), as when push and pull overlap in production.

The machine's CPUs are shared (by every node, PostgreSQL, the load generator, and whatever else
runs), so wall-clock rates say little about one node. Each node's figure is therefore also given
per CPU second it used (/proc: user + system time of its process group; PostgreSQL's postmaster
and its backends): what one core of its own would do, the unit of the README's sizing.

Prints, and records for `make bench`: webhooks per CPU second of a web process, readings per
CPU second of an ingest worker and of a qcluster's pull, PostgreSQL row writes per CPU second
(pg_stat_database: inserted + updated + deleted), bytes per stored reading
(pg_total_relation_size of the table and its partitions / rows), and the mirror against the
simulators' ground truth
(missing + doubled + surplus + devices wrong + deliveries unprocessed must be 0).
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import re
import signal
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BASE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE))

from bench.figures import record  # noqa: E402
from bench.soak import processes  # noqa: E402
from bench.soak import run as soak_run  # noqa: E402
from bench.soak.cluster import free_port  # noqa: E402
from bench.soak.run import SECRET, Soak, create_integration, prepare, stop_nodes  # noqa: E402

Request = tuple[str, bytes, dict[str, str]]  # path, body, headers


@dataclass
class Part:
    """One integration and the simulator (its own Golioth project) it mirrors."""

    simulator: Any
    integration: Any
    requests: list[Request]


def build_parts(soak: Soak, args: argparse.Namespace) -> list[Part]:
    from integrations.golioth.simulator.server import GoliothSimulator
    from integrations.golioth.simulator.webhooks import build_webhook

    now = datetime.now(UTC).replace(microsecond=0)
    parts = []
    for k in range(args.integrations):
        simulator = GoliothSimulator(project_id=f"scale-{k}", api_key="soak-api-key", seed=k)
        integration = create_integration(
            soak, simulator.start(), simulator.project_id, name=f"scale-{k}",
            maxRequestsPerSecond=1000, backfillFrom=(now - timedelta(hours=2)).isoformat(),
        )  # fmt: skip
        requests: list[Request] = []
        span = timedelta(minutes=50) / args.readings_per_device
        for d in range(args.devices):
            device = simulator.add_device(name=f"S{k}-{d:04d}", hardware_ids=[f"hw-{k}-{d}"])
            for n in range(args.readings_per_device):
                when = now - timedelta(minutes=55) + n * span + timedelta(microseconds=d)
                data = {"temp": round(20 + (n % 50) / 10, 1), "hum": 40 + d % 20, "seq": n}
                simulator.add_reading(device.id, when, data)
                webhook = build_webhook(
                    project_id=simulator.project_id, device_id=device.id, data=data,
                    shape="inject-metadata", time=when,
                )  # fmt: skip
                headers = {**webhook.headers, "Authorization": SECRET}
                requests.append((integration.webhook_path, webhook.body, headers))
        parts.append(Part(simulator, integration, requests))
    return parts


def client_loop(job: tuple[int, list[Request]]) -> tuple[int, int, int, float, float]:
    """One load-generator process: its requests, keep-alive, to one web process."""
    port, requests = job
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    ok = errors = 0
    started = time.time()
    for path, body, headers in requests:
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            ok += response.status == 202
            errors += response.status != 202
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    return port, ok, errors, started, time.time()


def push(parts: list[Part], ports: list[int], clients: int) -> dict[int, tuple[int, float]]:
    """Every request, spread over `clients` processes and the web ports; per port: (answered
    202, seconds from its first client's start to its last client's end)."""
    everything = [r for part in parts for r in part.requests]
    jobs = [(ports[c % len(ports)], everything[c::clients]) for c in range(clients)]
    # The senders take SIGTERM's default: the harness's own handler (bench.soak.run) raising in a
    # pool worker that Pool.terminate stops can leave another blocked on the pool's queue lock.
    sigterm = (signal.SIGTERM, signal.SIG_DFL)
    with multiprocessing.Pool(clients, initializer=signal.signal, initargs=sigterm) as pool:
        results = pool.map(client_loop, jobs)
    per_port: dict[int, tuple[int, float]] = {}
    for port in ports:
        mine = [r for r in results if r[0] == port]
        seconds = max(r[4] for r in mine) - min(r[3] for r in mine)
        per_port[port] = (sum(r[1] for r in mine), seconds)
        errors = sum(r[2] for r in mine)
        if errors:
            print(f"web process on port {port}: {errors} requests not answered 202")
    return per_port


def db_counters() -> tuple[int, int]:
    """Rows written (inserted + updated + deleted) and commits so far, in this database."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tup_inserted + tup_updated + tup_deleted, xact_commit "
            "FROM pg_stat_database WHERE datname = current_database()"
        )
        rows, commits = cursor.fetchone()
    return int(rows), int(commits)


def wait_until_ingesting(timeout: float = 60) -> None:
    """Until an ingest worker's loop runs (its first heartbeat), so start-up is not counted."""
    from integrations.models import Heartbeat

    deadline = time.monotonic() + timeout
    while not Heartbeat.objects.filter(name="ingest").exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"no ingest worker started within {timeout:.0f} s")
        time.sleep(0.2)
    time.sleep(2)


def wait_for_pulls(parts: list[Part], timeout: float) -> None:
    from integrations.models import ActivityLog

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = ActivityLog.objects.filter(
            activity_type="sync_import", status="success",
            integration__in=[p.integration for p in parts], readings_fetched__gt=0,
        ).values("integration").distinct().count()  # fmt: skip
        if done == len(parts):
            return
        time.sleep(1)
    raise SystemExit(f"the pulls did not finish within {timeout:.0f} s")


def pull_figures(qclusters: list[processes.Node]) -> dict[str, tuple[int, float, int]]:
    """Per qcluster: readings fetched, seconds spent pulling, runs (from each run's activity
    entry; its lease owner names the worker's pid, whose process group is its qcluster)."""
    from integrations.models import ActivityLog

    group_of = {node.proc.pid: node.name for node in qclusters if node.proc is not None}
    figures: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0])
    entries = ActivityLog.objects.filter(activity_type="sync_import", status="success")
    for entry in entries:
        pid = int(str(entry.metadata.get("lease", "::")).split(":")[1] or 0)
        try:
            name = group_of.get(os.getpgid(pid), "?")
        except (ProcessLookupError, PermissionError):
            name = "?"
        seconds = (entry.completed_at - entry.started_at).total_seconds()
        figures[name][0] += entry.readings_fetched
        figures[name][1] += seconds
        figures[name][2] += 1
    return {name: (int(f[0]), f[1], int(f[2])) for name, f in figures.items()}


def ingest_counts(workers: list[processes.Node]) -> dict[str, int]:
    counts = {}
    for node in workers:
        found = re.findall(r"ingest worker stopped: ([\d,]+) deliveries stored", node.output())
        counts[node.name] = sum(int(n.replace(",", "")) for n in found)
    return counts


def mirror_errors(parts: list[Part]) -> int:
    from bench.soak.verdict import judge
    from telemetry.keys import canonical_json

    errors = 0
    for part in parts:
        truth = Counter(
            (r.device_external_id, r.timestamp, canonical_json(r.payload))
            for r in part.simulator.readings()
        )
        verdict = judge(part.integration, truth, part.simulator.devices)
        errors += verdict.missing + verdict.doubled + verdict.surplus + verdict.devices_wrong
        errors += verdict.unprocessed
    return errors


def row_bytes(table: str) -> tuple[int, float]:
    """Rows of `table` and its bytes per row (table, indexes and TOAST)."""
    from django.db import connection

    with connection.cursor() as cursor:
        # A partitioned table has no storage of its own: sum its partitions' (a plain table is
        # no partition tree).
        cursor.execute(
            "SELECT coalesce((SELECT sum(pg_total_relation_size(relid))"
            " FROM pg_partition_tree(%s::regclass)), pg_total_relation_size(%s::regclass))",
            [table, table],
        )
        (size,) = cursor.fetchone()
        cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed names
        (rows,) = cursor.fetchone()
    return int(rows), float(size) / max(1, rows)  # sum() of bigint is numeric: a Decimal


def cpu_seconds(soak: Soak) -> dict[str, float]:
    """CPU seconds so far of each running node and of PostgreSQL."""
    used = {
        node.name: processes.cpu_seconds(pgid=node.proc.pid)
        for node in soak.nodes
        if node.proc is not None and node.alive
    }
    used["postgresql"] = processes.cpu_seconds(parent=soak.cluster.postmaster_pid)
    return used


def measure(soak: Soak, args: argparse.Namespace) -> int:
    from integrations.scheduling import enqueue_sync

    parts = build_parts(soak, args)
    ports = [free_port(), free_port()]
    webs = [processes.web_node(n, p, soak.env, soak.log_dir) for n, p in enumerate(ports, 1)]
    qclusters = [processes.qcluster_node(n, soak.env, soak.log_dir) for n in (1, 2)]
    workers = [processes.ingest_node(n, soak.env, soak.log_dir) for n in (1, 2)]
    soak.nodes = [*webs, *qclusters, *workers]
    for node in soak.nodes:
        node.start()
    for node in webs:
        processes.wait_until_serving(node, parts[0].integration.webhook_path)
    total = sum(len(p.requests) for p in parts)
    print(f"{len(parts)} integrations x {args.devices} devices x {args.readings_per_device} "
          f"readings = {total:,} readings, pushed and pulled", flush=True)  # fmt: skip
    wait_until_ingesting()
    rows0, commits0 = db_counters()
    cpu0 = cpu_seconds(soak)
    began = time.monotonic()
    for part in parts:
        enqueue_sync(part.integration, trigger="manual")
    per_port = push(parts, ports, args.clients)
    if soak_run.wait_for_queue(timeout=600):
        raise SystemExit("the ingest workers did not drain the queue within 600 s")
    drain_seconds = time.monotonic() - began
    wait_for_pulls(parts, timeout=600)
    elapsed = time.monotonic() - began
    rows1, commits1 = db_counters()
    cpu = {name: seconds - cpu0.get(name, 0.0) for name, seconds in cpu_seconds(soak).items()}
    pulls = pull_figures(qclusters)
    stop_nodes(soak.nodes)
    ingested = ingest_counts(workers)
    errors = mirror_errors(parts)
    sizes = {
        table: row_bytes(table) for table in ("device_telemetry_history", "webhook_deliveries")
    }
    for part in parts:
        part.simulator.stop()
    report(
        per_web={web.name: per_port[web.port or 0] for web in webs}, ingested=ingested,
        drain_seconds=drain_seconds, pulls=pulls,
        writes=(rows1 - rows0, commits1 - commits0, elapsed),
        sizes=sizes, errors=errors, cpu=cpu, readings=total,
    )  # fmt: skip
    return 1 if errors else 0


def report(
    *, per_web: dict[str, tuple[int, float]], ingested: dict[str, int], drain_seconds: float,
    pulls: dict[str, tuple[int, float, int]], writes: tuple[int, int, float],
    sizes: dict[str, tuple[int, float]], errors: int, cpu: dict[str, float], readings: int,
) -> None:  # fmt: skip
    """Each node's rate on the wall clock (shared CPUs: other work slows it) and per CPU second
    it used (what one core of its own would do), then the database's."""
    load = ", ".join(f"{n:.1f}" for n in os.getloadavg())
    print(f"\nper node: wall-clock rate on {os.cpu_count()} shared CPUs (load average {load}), "
          "and per CPU second used")  # fmt: skip
    work = {
        **{name: (ok, seconds, "webhooks") for name, (ok, seconds) in per_web.items()},
        **{name: (n, drain_seconds, "readings") for name, n in ingested.items()},
        **{name: (n, seconds, "pull readings") for name, (n, seconds, _) in pulls.items()},
    }
    per_cpu: dict[str, list[float]] = defaultdict(list)
    for name, (count, seconds, unit) in sorted(work.items()):
        used = cpu.get(name, 0.0)
        per_cpu[unit].append(count / used if used else 0.0)
        print(f"  {name:<11} {count / seconds:7.0f} {unit}/s  {per_cpu[unit][-1]:7.0f} per CPU s "
              f"({count:,} in {seconds:.1f} s, {used:.1f} CPU s)")  # fmt: skip
    rows, commits, elapsed = writes
    pg_cpu = cpu.get("postgresql", 0.0)
    print(f"  PostgreSQL  {rows / elapsed:7.0f} row writes/s  {rows / pg_cpu:7.0f} per CPU s "
          f"({rows:,} rows, {commits:,} commits, {elapsed:.0f} s, {pg_cpu:.1f} CPU s)")  # fmt: skip
    print(f"  {rows / readings:.1f} row writes per reading pushed and pulled")
    for table, (count, size) in sizes.items():
        print(f"{table}: {count:,} rows, {size:.0f} bytes per row (table, indexes and TOAST)")
    print(f"mirror vs ground truth: {errors} wrong (readings missing, doubled or surplus; "
          "devices; deliveries unprocessed)")  # fmt: skip

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    record("scaling: webhooks per CPU s, web process", mean(per_cpu["webhooks"]))
    record("scaling: readings per CPU s, ingest worker", mean(per_cpu["readings"]))
    record("scaling: pull readings per CPU s, qcluster", mean(per_cpu["pull readings"]))
    record("scaling: PostgreSQL row writes per CPU s", rows / pg_cpu if pg_cpu else 0.0)
    record("scaling: PostgreSQL row writes per reading", rows / readings)
    record("scaling: bytes per stored reading", sizes["device_telemetry_history"][1])
    record("scaling: bytes per stored webhook delivery", sizes["webhook_deliveries"][1])
    record("scaling: mirror errors (missing, doubled, devices)", errors, target="0",
           met=errors == 0)  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--integrations", type=int, default=4, help="simulators (projects)")
    parser.add_argument("--devices", type=int, default=100, help="devices per integration")
    parser.add_argument("--readings-per-device", type=int, default=100)
    parser.add_argument("--clients", type=int, default=4, help="load-generator processes")
    parser.add_argument("--log-dir", default=str(BASE / "test-output" / "scaling"))
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    soak_run.stop_on_sigterm()
    soak = prepare(args)
    try:
        return measure(soak, args)
    finally:
        from django.db import connections

        connections.close_all()
        stop_nodes(soak.nodes)
        soak.cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
