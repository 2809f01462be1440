"""The Golioth simulator for bench/bench_pull.py, in its own process so its memory is not counted.

    .venv/bin/python bench/pull_simulator.py --devices 1000 --readings 100000 --latency 0.15 \
        --start 2026-03-01T00:00:00+00:00 --end 2026-03-02T00:00:00+00:00

Seeds `--readings` readings spread evenly over `--devices` devices in [start, end), starts the
simulator, prints one JSON line ({"base_url", "project_id", "api_key", "readings"}) and serves
until its stdin closes (the benchmark holds the other end), then prints its call count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gsync.settings")

from integrations.golioth.simulator.server import GoliothSimulator  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--readings", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--start", type=datetime.fromisoformat, required=True)
    parser.add_argument("--end", type=datetime.fromisoformat, required=True)
    args = parser.parse_args()

    sim = GoliothSimulator(project_id="bench-project", api_key="bench-key", latency=args.latency)
    per_device = max(1, args.readings // args.devices)
    sim.seed_fleet(args.devices, per_device, start=args.start, end=args.end, never_connected=0)
    base_url = sim.start()
    ready = {
        "base_url": base_url,
        "project_id": sim.project_id,
        "api_key": sim.api_key,
        "readings": len(sim.store),
    }
    print(json.dumps(ready), flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin (or exits)
    sim.stop()
    print(json.dumps({"calls": sim.calls, "max_in_flight": sim.max_in_flight}), flush=True)


if __name__ == "__main__":
    main()
