"""The soak's order: set up, run with faults, stop the faults, one clean cycle and one
reconcile, judge (bench/soak/__init__.py says what each part does)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.soak.cluster import PostgresCluster, free_port
from bench.soak.processes import (
    BASE,
    MANAGE,
    Node,
    ingest_node,
    qcluster_node,
    wait_until_serving,
    web_node,
)

SECRET = "soak-webhook-secret-0123456789"
REDIS_URL = os.environ.get("GSYNC_REDIS_URL") or "redis://127.0.0.1:6379/0"


@dataclass
class Soak:
    """Everything one soak started, for the end to stop (and the verdict to read)."""

    args: argparse.Namespace
    cluster: PostgresCluster
    env: dict[str, str]
    log_dir: Path
    nodes: list[Node] = field(default_factory=list)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    state: dict[str, Any] = field(default_factory=dict)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_minutes = float(os.environ.get("SOAK_MINUTES") or 3)
    parser.add_argument("--minutes", type=float, default=default_minutes,
                        help="minutes under faults (default: $SOAK_MINUTES or 3)")  # fmt: skip
    parser.add_argument("--devices", type=int, default=60)
    parser.add_argument("--cadence", type=float, default=10.0, help="seconds between reports")
    parser.add_argument("--webhook-rate", type=float, default=10.0, help="webhooks per second")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-dir", default=str(BASE / "test-output" / "soak"))
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace) -> Soak:
    """Start the soak's PostgreSQL and point this process's Django at it; migrate."""
    from cryptography.fernet import Fernet

    cluster = PostgresCluster()
    cluster.start()
    env = {
        **os.environ,
        "DATABASE_URL": cluster.url,
        "DJANGO_SETTINGS_MODULE": "bench.soak.settings",
        "SECRET_KEY": "soak-only-secret-key",
        "GSYNC_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "GSYNC_REDIS_URL": REDIS_URL,
        "GSYNC_SOAK_ID": f"{os.getpid()}-{cluster.port}",
        "GSYNC_WORKERS": "1",
        "PYTHONPATH": str(BASE),
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    return Soak(args, cluster, env, log_dir)


def create_integration(
    soak: Soak, base_url: str, project_id: str, *, name: str = "soak", **settings: Any
) -> Any:
    """An integration with webhooks on (secret SECRET), pulling every minute from `base_url`."""
    from integrations.models import DeviceIntegration

    integration = DeviceIntegration(
        name=name, project_id=project_id, base_url=base_url, webhook_enabled=True,
        settings={
            "syncIntervalSeconds": 60, "overlapSeconds": 60, "settleSeconds": 5,
            "maxRequestsPerSecond": 50,
            "backfillFrom": (soak.started - timedelta(minutes=5)).isoformat(),
            **settings,
        },
    )  # fmt: skip
    integration.set_api_key("soak-api-key")
    integration.add_webhook_secret(SECRET)
    integration.save()
    return integration


def pipeline_text(integration: Any) -> str:
    """The pipelines the integration page gives operators for /sensor (JSON and CBOR devices).
    The integration itself mirrors every path but /logs (its default): legacy Output Streams
    bodies name no path, and a path-restricted integration would ignore them."""
    from integrations.push.pipeline import pipeline_yaml

    integration.settings = {**integration.settings, "mirroredPaths": ["/sensor"]}
    text = pipeline_yaml(integration)
    integration.refresh_from_db()
    return text


def start_nodes(soak: Soak, probe_path: str) -> None:
    ports = [free_port(), free_port()]
    soak.nodes = [
        *(web_node(n, port, soak.env, soak.log_dir) for n, port in enumerate(ports, 1)),
        *(ingest_node(n, soak.env, soak.log_dir) for n in (1, 2)),
        *(qcluster_node(n, soak.env, soak.log_dir) for n in (1, 2)),
    ]
    for node in soak.nodes:
        node.start()
    for node in soak.nodes:
        if node.kind == "web":
            wait_until_serving(node, probe_path)


def stop_nodes(nodes: list[Node]) -> None:
    for node in nodes:
        if node.proc is not None and node.alive:
            node.proc.terminate()
    for node in nodes:
        node.stop(timeout=30)


def wait_for_queue(timeout: float) -> int:
    """Until no webhook delivery waits for an ingest worker; returns how many still wait."""
    from django.db import DatabaseError, connection

    from integrations.models import WebhookDelivery

    deadline = time.monotonic() + timeout
    waiting = -1
    while time.monotonic() < deadline:
        try:
            waiting = WebhookDelivery.objects.filter(outcome__in=["queued", "received"]).count()
        except DatabaseError:
            connection.close()
        if waiting == 0:
            return 0
        time.sleep(0.5)
    return waiting


def final_cycle(soak: Soak, integration: Any, until: datetime) -> list[str]:
    """One clean pull (waiting out a lease a killed worker left) and one `manage.py reconcile`
    over the whole soak; returns their report lines."""
    from integrations.pull.sync import sync_integration

    deadline = time.monotonic() + 90
    while True:
        outcome = sync_integration(integration, trigger="manual", force=True)
        if outcome.status != "skipped" or time.monotonic() > deadline:
            break
        time.sleep(2)
    error = f" ({outcome.error})" if outcome.error else ""
    lines = [
        f"final pull: {outcome.status}{error}, {outcome.fetched:,} fetched, "
        f"{outcome.inserted:,} inserted"
    ]
    since = (soak.started - timedelta(minutes=10)).isoformat()
    reconcile = subprocess.run(
        [*MANAGE, "reconcile", integration.name, "--since", since, "--until", until.isoformat(),
         "-v", "0"],
        env=soak.env, cwd=BASE, capture_output=True, text=True,
    )  # fmt: skip
    lines.append(f"final reconcile (exit {reconcile.returncode}): {reconcile.stdout.strip()}")
    if reconcile.returncode:
        lines.append(reconcile.stderr.strip()[-2000:])
    return lines


def pull_summary(integration: Any) -> str:
    from django.db.models import Count, Sum

    from integrations.models import ActivityLog

    entries = ActivityLog.objects.filter(
        integration=integration, activity_type__in=["sync_import", "reconcile"]
    )
    by_status = Counter(
        {f"{t} {s}": n for t, s, n in entries.values_list("activity_type", "status")
         .annotate(n=Count("id")).values_list("activity_type", "status", "n")}
    )  # fmt: skip
    totals = entries.aggregate(calls=Sum("api_calls"), retries=Sum("retries"))
    runs = ", ".join(f"{key} {n}" for key, n in sorted(by_status.items()))
    return (
        f"pull runs: {runs}; API calls {totals['calls'] or 0:,}, retries {totals['retries'] or 0:,}"
    )


def stop_on_sigterm() -> None:
    """A SIGTERM (a CI timeout, a supervisor) ends the run through its clean-up (the callers'
    `finally`), so no node or PostgreSQL cluster outlives it."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    soak = prepare(args)
    try:
        return run(soak)
    finally:
        from django.db import connections

        connections.close_all()
        stop_nodes(soak.nodes)
        soak.cluster.stop()


@dataclass
class Golioth:
    """The Golioth side: the simulator, its fleet and the webhooks its pipelines send."""

    simulator: Any
    integration: Any
    sender: Any
    fleet: Any


def start_golioth(soak: Soak) -> Golioth:
    from bench.soak.traffic import LiveFleet, WebhookSender
    from integrations.golioth.simulator.server import GoliothSimulator

    args = soak.args
    simulator = GoliothSimulator(project_id="soak-project", api_key="soak-api-key", seed=args.seed)
    integration = create_integration(soak, simulator.start(), simulator.project_id)
    text = pipeline_text(integration)
    start_nodes(soak, integration.webhook_path)
    sender = WebhookSender(
        ports=[n.port or 0 for n in soak.nodes if n.kind == "web"],
        path=integration.webhook_path, secret=SECRET, project_id=simulator.project_id,
        rate=args.webhook_rate, seed=args.seed,
    )  # fmt: skip
    fleet = LiveFleet(
        simulator, sender, pipeline_text=text, devices=args.devices,
        cadence=timedelta(seconds=args.cadence),
        outage=(timedelta(seconds=90), timedelta(seconds=240)), seed=args.seed,
    )  # fmt: skip
    return Golioth(simulator, integration, sender, fleet)


def run(soak: Soak) -> int:
    from bench.soak.faults import FaultSchedule
    from bench.soak.verdict import judge_fleet

    args = soak.args
    golioth = start_golioth(soak)
    faults = FaultSchedule(
        nodes=soak.nodes, cluster=soak.cluster, simulator=golioth.simulator,
        fleet=golioth.fleet.model, minutes=args.minutes, seed=args.seed,
    )  # fmt: skip
    print(f"soak: {args.minutes:g} min under faults; PostgreSQL of its own on port "
          f"{soak.cluster.port}; logs in {soak.log_dir}", flush=True)  # fmt: skip
    golioth.sender.start()
    golioth.fleet.start()
    faults.start()
    wait_minutes(args.minutes, lambda: progress(golioth, faults.counts))
    faults.stop()
    until, drained = settle(soak, golioth)
    report = final_cycle(soak, golioth.integration, until)
    verdict = judge_fleet(golioth.integration, golioth.fleet.model, until=until)
    golioth.simulator.stop()
    print_report(soak, golioth, faults.counts)
    print("\n".join(report + verdict.lines()))
    passed = verdict.passed and drained
    print("PASS" if passed else "FAIL", flush=True)
    return 0 if passed else 1


def wait_minutes(minutes: float, report: Any) -> None:
    began = time.monotonic()
    while (left := minutes * 60 - (time.monotonic() - began)) > 0:
        time.sleep(min(30.0, left))
        print(f"  {time.monotonic() - began:5.0f} s: {report()}", flush=True)


def progress(golioth: Golioth, faults: Counter[str]) -> str:
    return (
        f"{golioth.fleet.model.truth.total():,} readings, {golioth.sender.stats['readings']:,} "
        f"webhooks, {golioth.sender.pending} pending; faults so far {dict(faults)}"
    )


def settle(soak: Soak, golioth: Golioth) -> tuple[datetime, bool]:
    """The fleet stops; what it sent is delivered and stored; every node stops. Returns the
    time the fleet stopped at and whether every webhook was delivered and stored."""
    from django.db import connections

    until = golioth.fleet.stop()
    drained = golioth.sender.drain(timeout=120)
    golioth.sender.stop()
    connections.close_all()
    waiting = wait_for_queue(timeout=120)
    stop_nodes(soak.nodes)
    if not drained or waiting:
        print(f"not drained: {golioth.sender.pending} webhooks unsent, {waiting} still queued")
    time.sleep(golioth.integration.sync_settings.settle_seconds)
    return until, drained and not waiting


def print_report(soak: Soak, golioth: Golioth, faults: Counter[str]) -> None:
    args, sim, uploads = soak.args, golioth.simulator, golioth.fleet.model.uploads
    oldest = max((u.at - u.oldest for u in uploads), default=timedelta())
    injected = Counter(r.fault for r in sim.requests if r.fault)
    print(
        f"\nsoak: {args.minutes:g} min, {args.devices} devices every {args.cadence:g} s, "
        f"webhooks at {args.webhook_rate:g}/s, API faults on 20% of calls\n"
        f"faults: {joined(faults)}\n"
        f"PostgreSQL down {soak.cluster.downtime:.1f} s in {soak.cluster.restarts} restart(s)\n"
        f"fleet: {len(uploads)} back-dated uploads ({sum(u.readings for u in uploads):,} "
        f"readings, the oldest {oldest.total_seconds():.0f} s old)\n"
        f"webhooks: {joined(golioth.sender.stats)}\n"
        f"simulator: {sim.calls:,} API calls, faults injected: {joined(injected)}\n"
        f"{pull_summary(golioth.integration)}"
    )


def joined(counts: Counter[str] | Counter[str | None]) -> str:
    return ", ".join(f"{key} {n:,}" for key, n in sorted(counts.items(), key=str))


if __name__ == "__main__":
    sys.exit(main())
