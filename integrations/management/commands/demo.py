"""`manage.py demo [--live]`: the Golioth simulator with a demo fleet, and an integration for it."""

from __future__ import annotations

import argparse
import random
import time
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from integrations import crypto
from integrations.demo import Demo, add_live_readings, pause_demo, start_demo
from integrations.golioth.api_hosts import ApiHostError, ApiHostPolicy
from integrations.scheduling import ensure_schedules


class Command(BaseCommand):
    help = (
        "Start a local Golioth simulator with a demo fleet (in the foreground; Ctrl-C stops it) "
        "and point the 'Demo fleet' integration at it. Needs a running worker (`make run` starts "
        "one) for the readings to arrive."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8901, help="simulator port (8901)")
        parser.add_argument("--devices", type=int, default=12)
        parser.add_argument("--readings-per-device", type=int, default=36)
        parser.add_argument("--history-hours", type=float, default=6.0)
        parser.add_argument(
            "--live", action="store_true", help="keep adding readings, pushed and pulled"
        )
        parser.add_argument("--live-interval", type=float, default=5.0, help="seconds (5)")
        # For tests: stop by itself instead of waiting for Ctrl-C.
        parser.add_argument("--stop-after", type=float, default=None, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        ensure_schedules()
        try:
            crypto.check_keys()  # the demo stores the simulator's API key
        except crypto.EncryptionKeyError as exc:
            raise CommandError(str(exc)) from None
        demo = start_demo(
            port=options["port"],
            devices=options["devices"],
            readings_per_device=options["readings_per_device"],
            history=timedelta(hours=options["history_hours"]),
            now=timezone.now(),
        )
        self._warn_if_refused(demo)
        live = f"New readings every {options['live_interval']:g} s. " if options["live"] else ""
        self.stdout.write(
            f"Demo: Golioth simulator at {demo.simulator.base_url} with {len(demo.fleet)} "
            f"devices and {len(demo.simulator.store)} readings.\n"
            f"Integration '{demo.integration.name}' (id {demo.integration.pk}) syncs it every "
            f"60 s; webhooks go to {demo.integration.webhook_url}.\n{live}Ctrl-C stops the demo."
        )
        try:
            self._serve(demo, options)
        except KeyboardInterrupt:
            pass
        finally:
            demo.simulator.stop()
            pause_demo(demo.integration)
            self.stdout.write("Demo stopped; the 'Demo fleet' integration is paused.")

    def _warn_if_refused(self, demo: Demo) -> None:
        # The worker and the web process judge the simulator's host by their own settings;
        # GSYNC_DEMO=1 (what `make run` passes them all) is what allows it.
        try:
            ApiHostPolicy.from_settings().check_url(demo.simulator.base_url or "")
        except ApiHostError as exc:
            self.stderr.write(
                f"Warning: {exc}. Start gsync with GSYNC_DEMO=1 (`GSYNC_DEMO=1 make run`) so its "
                "worker may call the simulator."
            )

    def _serve(self, demo: Demo, options: dict[str, Any]) -> None:
        interval = max(0.5, options["live_interval"])
        stop_after = options["stop_after"]
        deadline = time.monotonic() + stop_after if stop_after is not None else None
        rng, seq = random.Random(0), options["readings_per_device"]
        while deadline is None or time.monotonic() < deadline:
            left = interval if deadline is None else deadline - time.monotonic()
            time.sleep(max(0.0, min(interval, left)))
            if options["live"]:
                add_live_readings(demo, rng=rng, seq=seq)
                seq += 1
