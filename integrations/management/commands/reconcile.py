"""`manage.py reconcile`: verify completeness against Golioth now, as the schedule does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.management.commands.runsync import (
    parse_window,
    select_integrations,
    warn_past_retention,
)
from integrations.models import ActivityLog, DeviceIntegration
from integrations.pull.outcomes import ReconcileOutcome
from integrations.pull.reconcile import reconcile_integration


class Command(BaseCommand):
    help = (
        "Compare Golioth's readings per device per hour with gsync's over each named "
        "integration's lookback (or --since/--until), re-read what is missing, report surplus. "
        "--dry-run compares without writing. Exits non-zero when a run failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", metavar="INTEGRATION", help="integration names")
        parser.add_argument("--all", action="store_true", help="every integration")
        parser.add_argument("--since", metavar="T", help="check from T (2026-03-01, 2h, 3d)")
        parser.add_argument("--until", metavar="T", help="check up to T (default: now)")
        parser.add_argument(
            "--dry-run", action="store_true", help="compare and report, write nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # The same time syntax, selection and exit codes as runsync.
        since, until = parse_window(options["since"], options["until"])
        warn_past_retention(since, stderr=self.stderr)
        integrations = select_integrations(options["names"], every=options["all"])
        failed = 0
        for integration in integrations:
            try:
                outcome = reconcile_integration(
                    integration,
                    trigger=ActivityLog.Trigger.MANUAL,
                    since=since,
                    until=until,
                    dry_run=options["dry_run"],
                )
            except ValueError as exc:  # an empty window
                raise CommandError(f"{integration.name}: {exc}") from None
            self.stdout.write(summary_line(integration, outcome))
            failed += outcome.failed
        if failed:
            raise CommandError(f"{failed} of {len(integrations)} reconciles failed", returncode=1)


def summary_line(integration: DeviceIntegration, o: ReconcileOutcome) -> str:
    line = f"{integration.name}: {o.status}"
    if o.skip_reason:
        return f"{line} ({o.skip_reason})"
    line += f" window={_iso(o.window_start)}..{_iso(o.window_end)}: {o.describe()}"
    if o.dry_run:
        line += " [dry run: nothing written]"
    elif o.verified_through:
        line += f"; verified complete through {_iso(o.verified_through)}"
    if o.error:
        line += f" error: {o.error}"
    return line


def _iso(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"
