"""`manage.py count_readings`: rebuild the per-minute reading counts the dashboard, the control
panel and the lag read (telemetry.counts) from the readings stored.

Triggers keep the counts as readings change; this is for a table filled with triggers off
(a restore with session_replication_role = replica, bench/bench_admin.py's fill). It reads the
readings an hour of reading time per transaction, so ingest goes on meanwhile.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from telemetry.counts import recount


class Command(BaseCommand):
    help = "Rebuild the per-minute reading counts from the readings stored, an hour at a time."

    def handle(self, *args: Any, **options: Any) -> None:
        hours = recount()
        self.stdout.write(f"Counted the readings of {hours} hours of reading time.")
