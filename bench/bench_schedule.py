"""Intervals under the real scheduler: two qclusters, the one dispatch schedule, N minutes.

    .venv/bin/python bench/bench_schedule.py [--minutes 11] [--database-url postgres://postgres@127.0.0.1:5432/]

Creates a throwaway PostgreSQL database (dropped afterwards), migrates it (which creates the
schedule), starts the Golioth simulator in this process with a small live fleet, adds
integrations at 60 s and 300 s (plus a paused and a disabled one), starts two qclusters and lets
django-q2's own scheduler dispatch, nothing else. Then prints, per integration, the runs and the
gaps between their starts, which qcluster ran them, and whether the mirror equals the simulator.

Target (issue 5): 60 s about every minute, 300 s about every five, paused/disabled never.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE))
sys.path.insert(0, str(BASE / "bench"))

from bench_pull import throwaway_database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=11)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/")
    args = parser.parse_args()
    with throwaway_database(args.database_url) as database_url:
        env = setup_django(database_url)
        run(args, env)


def setup_django(database_url: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    os.environ.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="gsync.settings",
        SECRET_KEY="bench-only-secret-key",
        GSYNC_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        # The simulator listens on 127.0.0.1, which gsync refuses unless told (issue 9).
        GSYNC_API_HOSTS="127.0.0.1",
        GSYNC_ALLOW_PRIVATE_API_HOSTS="1",
        GSYNC_WORKERS="2",
        LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return dict(os.environ)


def run(args: argparse.Namespace, env: dict[str, str]) -> None:
    from integrations.golioth.simulator.server import GoliothSimulator

    now = datetime.now(UTC)
    with GoliothSimulator(latency=0.05) as sim:
        fleet = sim.seed_fleet(10, 30, start=now - timedelta(hours=1), end=now)
        integrations = make_integrations(sim, history=now - timedelta(hours=2))
        clusters = [start_qcluster(env, name) for name in ("a", "b")]
        print(f"two qclusters (pids {[c.pid for c in clusters]}), {args.minutes:g} minutes...")
        try:
            deadline = time.monotonic() + args.minutes * 60
            seq = 0
            while time.monotonic() < deadline:
                time.sleep(5)
                seq += 1
                for device in fleet[:5]:  # a live fleet: new readings keep arriving
                    sim.add_reading(device.id, datetime.now(UTC), {"seq": seq})
        finally:
            groups = worker_groups()
            for cluster in clusters:
                cluster.terminate()  # the main process stops its workers
            for cluster in clusters:
                try:
                    cluster.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(cluster.pid, signal.SIGKILL)
        report(sim, integrations)
        names = {c.pid: n for n, c in zip("ab", clusters, strict=True)}
        per_cluster: dict[str, int] = {}
        for group in groups:
            key = f"qcluster {names.get(group, '?')}"
            per_cluster[key] = per_cluster.get(key, 0) + 1
        print(f"runs per qcluster: {per_cluster}")


def worker_groups() -> list[int | None]:
    """The process group (= qcluster) of the worker behind each run, while they still live."""
    from integrations.models import ActivityLog

    groups = []
    for entry in ActivityLog.objects.filter(activity_type="sync_import"):
        try:
            groups.append(os.getpgid(int(entry.metadata["lease"].split(":")[-2])))
        except (KeyError, ValueError, ProcessLookupError):
            groups.append(None)
    return groups


def make_integrations(sim, *, history: datetime) -> list:
    from integrations.models import DeviceIntegration

    specs = [("60s-a", 60, "active", True), ("60s-b", 60, "active", True),
             ("300s-a", 300, "active", True), ("300s-b", 300, "active", True),
             ("paused", 60, "paused", True), ("disabled", 60, "active", False)]  # fmt: skip
    made = []
    for name, interval, status, enabled in specs:
        integration = DeviceIntegration(
            name=name, project_id=sim.project_id, base_url=sim.base_url, status=status,
            settings={"syncIntervalSeconds": interval, "syncEnabled": enabled,
                      "backfillFrom": history.isoformat()},
        )  # fmt: skip
        integration.set_api_key(sim.api_key)
        integration.save()
        made.append(integration)
    return made


def start_qcluster(env: dict[str, str], name: str) -> subprocess.Popen:
    log = open(BASE / "test-output" / f"bench-schedule-{name}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"], cwd=BASE, env=env, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def report(sim, integrations: list) -> None:
    from integrations.models import ActivityLog
    from telemetry.keys import canonical_json
    from telemetry.models import TelemetryRecord

    print(f"{'integration':<12} {'runs':>4}  {'gaps between starts (s)':<34} mirror")
    for integration in integrations:
        runs = list(
            ActivityLog.objects.filter(
                integration=integration, activity_type="sync_import"
            ).order_by("started_at")
        )
        starts = [r.started_at for r in runs]
        gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
        gap_text = (
            f"mean {statistics.mean(gaps):.0f}, min {min(gaps):.0f}, max {max(gaps):.0f}"
            if gaps else "-"
        )  # fmt: skip
        exact = "-"
        if runs:
            end = runs[-1].window_end
            stored = sorted(
                (r.device.external_id, r.device_timestamp, canonical_json(r.telemetry))
                for r in TelemetryRecord.objects.filter(integration=integration)
                .select_related("device")
                .filter(device_timestamp__lt=end)
            )
            truth = sorted((r.device_external_id, r.timestamp, canonical_json(r.payload))
                           for r in sim.readings(end=end))  # fmt: skip
            exact = "exact" if stored == truth else f"DIFFERS ({len(stored)} vs {len(truth)})"
        print(f"{integration.name:<12} {len(runs):>4}  {gap_text:<34} {exact}")


if __name__ == "__main__":
    main()
