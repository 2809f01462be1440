"""API cost of a pull cycle and of a reconcile, for a moving fleet, against their bounds.

    .venv/bin/python bench/bench_reconcile.py [--devices 1000] [--hours 48] [--cadence 10]
        [--database-url postgres://postgres@127.0.0.1:5432/ | sqlite]

A FleetModel (integrations.golioth.simulator.fleet) of --devices devices reporting every --cadence
minutes, a tenth of them offline at any moment and uploading back-dated batches, runs --hours
through the pipelines the integration page shows; gsync backfills it into a throwaway database
(bench_pull.throwaway_database). Then, in fleet time:

1. three hours of pull cycles (the fleet moves on by one sync interval, 5 min, each): their API
   calls against ceil(devices / 100) device pages + ceil(readings in the window / 100) + 1;
2. a reconcile of the lookback (the default 48 h), which finds the back-dated uploads the pull
   moved past: its calls against ceil(device-hours / 100) + the repair pages (per device-hour
   re-read per device, or per hour when more than reconcile.PER_DEVICE_LIMIT devices differ in it);
3. a second reconcile over the now complete mirror: counts only, ceil(device-hours / 100);

and compares the mirror with the fleet's ground truth up to the verified time (missing, doubled).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE))
sys.path.insert(0, str(BASE / "bench"))

from bench_pull import setup_django, throwaway_database  # noqa: E402
from figures import record  # noqa: E402

START = datetime(2026, 3, 1, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=48, help="fleet history = reconcile lookback")
    parser.add_argument("--cadence", type=float, default=10.0, help="minutes between reports")
    parser.add_argument(
        "--database-url",
        default="postgres://postgres@127.0.0.1:5432/",
        help="PostgreSQL server for a throwaway database, or 'sqlite'",
    )
    args = parser.parse_args()
    with throwaway_database(args.database_url) as database_url:
        setup_django(database_url)
        run(args, vendor=database_url.split(":")[0])


def run(args: argparse.Namespace, *, vendor: str) -> None:
    from integrations.golioth.simulator.fleet import FleetModel
    from integrations.golioth.simulator.pipelines import pipelines_from_yaml
    from integrations.golioth.simulator.server import GoliothSimulator
    from integrations.models import DeviceIntegration
    from integrations.pull.sync import sync_integration
    from integrations.push.pipeline import pipeline_yaml

    with GoliothSimulator() as simulator:
        integration = DeviceIntegration(
            name="bench",
            project_id=simulator.project_id,
            base_url=simulator.base_url,
            settings={
                "maxRequestsPerSecond": 1000,
                "backfillFrom": START.isoformat(),
                "mirroredPaths": ["/sensor"],
                "reconcileLookbackHours": args.hours,
            },
        )
        integration.set_api_key(simulator.api_key)
        integration.save()
        fleet = FleetModel(
            simulator,
            pipelines=pipelines_from_yaml(pipeline_yaml(integration)),
            start=START,
            devices=args.devices,
            cadence=timedelta(minutes=args.cadence),
        )
        print(
            f"{args.devices:,} devices, {args.hours} h, a report per {args.cadence:g} min, {vendor}"
        )
        fleet.advance(START + timedelta(hours=args.hours))
        started = time.perf_counter()
        backfill = sync_integration(integration, now=fleet.now)
        check(backfill)
        print(
            f"  backfill      {backfill.fetched:,} readings, {backfill.api_calls:,} API calls, "
            f"{time.perf_counter() - started:.0f} s"
        )

        # Three hours of cycles: devices come back and upload behind the pull's overlap.
        interval = timedelta(seconds=integration.sync_settings.sync_interval_seconds)
        cycles = []
        for _ in range(int(timedelta(hours=3) / interval)):
            fleet.advance(fleet.now + interval)
            cycles.append(sync_integration(integration, now=fleet.now))
            check(cycles[-1])
        truth = fleet.ground_truth()
        over, windows = 0, []
        for cycle in cycles:
            in_window = sum(1 for _, t, _ in truth if cycle.window_start <= t < cycle.window_end)
            windows.append(in_window)
            bound = math.ceil(args.devices / 100) + math.ceil(in_window / 100) + 1
            over = max(over, cycle.api_calls - bound)
        calls = sorted(c.api_calls for c in cycles)
        typical = sorted(windows)[len(windows) // 2]
        print(
            f"  pull cycles   {len(cycles)} of {interval.seconds // 60} min: median "
            f"{calls[len(calls) // 2]} API calls (max {calls[-1]}) for a median {typical:,} "
            f"readings in the window"
        )
        print(
            f"                bound ceil({args.devices:,}/100) + ceil(readings/100) + 1 per cycle: "
            f"{'every cycle within' if over <= 0 else f'OVER by up to {over}'}"
        )
        print(f"  uploads       {len(fleet.uploads):,} back-dated batches so far")

        reconcile(fleet, integration, label="reconcile", devices=args.devices)
        reconcile(fleet, integration, label="again", devices=args.devices)


def reconcile(fleet, integration, *, label: str, devices: int) -> None:
    from integrations.pull.reconcile import PER_DEVICE_LIMIT, reconcile_integration

    truth = Counter(fleet.ground_truth())
    stored_before = mirror(integration)
    started = time.perf_counter()
    outcome = reconcile_integration(integration, now=fleet.now)
    seconds = time.perf_counter() - started
    check(outcome)
    start, end = outcome.window_start, outcome.window_end
    held: Counter = Counter()  # (hour, device) -> readings Golioth holds
    missing: dict[datetime, set[str]] = defaultdict(set)  # hour -> devices the mirror lacks
    for (device, moment, payload), n in truth.items():
        if start <= moment < end:
            hour = moment.replace(minute=0, second=0, microsecond=0)
            held[(hour, device)] += n
            if (device, moment, payload) not in stored_before:
                missing[hour].add(device)
    repair = 0  # a re-read pages until a short page: ceil((n + 1) / 100) pages for n readings
    for hour, devices_missing in missing.items():
        readings = [held[(hour, d)] for d in devices_missing]
        if len(devices_missing) <= PER_DEVICE_LIMIT:
            repair += sum(math.ceil((n + 1) / 100) for n in readings)
        else:
            repair += math.ceil((sum(readings) + 1) / 100)
    counts = math.ceil(outcome.buckets_checked / 100)
    bound = counts + repair
    print(
        f"  {label:<13} {outcome.api_calls} API calls: {outcome.buckets_checked:,} device-hours "
        f"checked, {outcome.buckets_missing} missing, {outcome.recovered:,} readings recovered, "
        f"{seconds:.1f} s"
    )
    print(
        f"                bound ceil({outcome.buckets_checked:,}/100) + {repair} repair pages = "
        f"{bound} ({ratio(outcome.api_calls, bound)})"
    )
    stored = mirror(integration)
    verified = Counter({k: n for k, n in truth.items() if k[1] < end})
    mine = Counter({k: n for k, n in stored.items() if k[1] < end})
    lost = sum((verified - mine).values())
    doubled = sum(n - 1 for n in mine.values() if n > 1) + sum((mine - verified).values())
    print(
        f"                mirror vs ground truth through {end:%Y-%m-%d %H:%M}: "
        f"{lost} missing, {doubled} doubled, devices {devices:,}"
    )
    record(f"reconcile ({label.strip()}): API calls", outcome.api_calls, reference=bound,
           target="<= counts + repair pages", met=outcome.api_calls <= bound)  # fmt: skip
    record(f"reconcile ({label.strip()}): readings missing + doubled after", lost + doubled,
           reference=0, target="0", met=lost + doubled == 0)  # fmt: skip


def mirror(integration) -> Counter:
    from telemetry.keys import canonical_json
    from telemetry.models import TelemetryRecord

    rows = TelemetryRecord.objects.filter(integration=integration).values_list(
        "device__external_id", "device_timestamp", "telemetry"
    )
    return Counter((d, t.astimezone(UTC), canonical_json(p)) for d, t, p in rows.iterator())


def check(outcome) -> None:
    if outcome.status != "success":
        raise SystemExit(f"run {outcome.status}: {outcome.error}")


def ratio(calls: int, bound: int) -> str:
    return "within" if calls <= bound else f"OVER by {calls - bound}"


if __name__ == "__main__":
    main()
