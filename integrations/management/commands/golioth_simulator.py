"""`manage.py golioth_simulator`: a local Golioth with a seeded fleet, in the foreground."""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from integrations.golioth.simulator.faults import FaultConfig
from integrations.golioth.simulator.server import GoliothSimulator
from integrations.golioth.simulator.store import SimDevice


class Command(BaseCommand):
    help = "Run a local Golioth API simulator with a seeded fleet (for demos and manual testing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8900)
        parser.add_argument("--devices", type=int, default=50)
        parser.add_argument("--readings-per-device", type=int, default=200)
        parser.add_argument(
            "--history-hours", type=float, default=24.0, help="how far back the seeded readings go"
        )
        parser.add_argument(
            "--live", action="store_true", help="add a reading per device every --live-interval s"
        )
        parser.add_argument("--live-interval", type=float, default=5.0)
        parser.add_argument("--latency", type=float, default=0.0, help="seconds added per call")
        parser.add_argument(
            "--fault-rate", type=float, default=0.0, help="share of calls that fail (0..1)"
        )
        parser.add_argument("--project-id", default="sim-project")
        parser.add_argument("--api-key", default="sim-key")
        parser.add_argument("--seed", type=int, default=0)
        # For tests: stop by itself instead of waiting for Ctrl-C.
        parser.add_argument("--stop-after", type=float, default=None, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        faults = FaultConfig(rate=options["fault_rate"]) if options["fault_rate"] > 0 else None
        sim = GoliothSimulator(
            project_id=options["project_id"],
            api_key=options["api_key"],
            latency=options["latency"],
            faults=faults,
            seed=options["seed"],
        )
        now = datetime.now(UTC)
        fleet = sim.seed_fleet(
            options["devices"],
            options["readings_per_device"],
            start=now - timedelta(hours=options["history_hours"]),
            end=now,
        )
        base_url = sim.start(port=options["port"])
        self.stdout.write(
            f"Golioth simulator at {base_url}\n"
            f"  project id: {sim.project_id}\n"
            f"  API key:    {sim.api_key}\n"
            f"  {len(fleet)} devices, {len(sim.store)} readings"
            f"{', live' if options['live'] else ''}. Ctrl-C stops it."
        )
        try:
            self._serve(sim, fleet, options)
        except KeyboardInterrupt:
            pass
        finally:
            sim.stop()
            self.stdout.write(f"Simulator stopped after {sim.calls} calls.")

    def _serve(
        self, sim: GoliothSimulator, fleet: list[SimDevice], options: dict[str, Any]
    ) -> None:
        deadline = (
            None if options["stop_after"] is None else time.monotonic() + options["stop_after"]
        )
        interval = max(0.1, options["live_interval"])
        connected = [d for d in fleet if d.last_report is not None]
        rng = random.Random(options["seed"])
        seq = options["readings_per_device"]
        while deadline is None or time.monotonic() < deadline:
            pause = interval if deadline is None else min(interval, deadline - time.monotonic())
            time.sleep(max(0.0, pause))
            if options["live"]:
                # New readings arrive "now", as a live fleet's would.
                for device in connected:
                    data = {"temp": round(rng.gauss(21.5, 2.0), 2), "hum": 45.0, "seq": seq}
                    sim.add_reading(device.id, datetime.now(UTC), data)
                seq += 1
