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
from integrations.management.terminal import entry_row, moment, progress_reporter, table
from integrations.models import ActivityLog, DeviceIntegration
from integrations.pull.outcomes import ReconcileOutcome
from integrations.pull.reconcile import reconcile_integration


class Command(BaseCommand):
    help = (
        "Compare Golioth's readings per device per hour with gsync's over each named "
        "integration's lookback (or --since/--until), re-read what is missing, report surplus. "
        "--dry-run compares without writing. On a terminal a progress bar runs; -v 2 prints "
        "every page re-read, -v 0 one line per integration. Exits non-zero when a run failed."
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
            reporter = progress_reporter(
                self.stdout, name=integration.name, verbosity=options["verbosity"]
            )
            try:
                with reporter as progress:
                    outcome = reconcile_integration(
                        integration,
                        trigger=ActivityLog.Trigger.MANUAL,
                        since=since,
                        until=until,
                        dry_run=options["dry_run"],
                        progress=progress,
                    )
            except ValueError as exc:  # an empty window
                raise CommandError(f"{integration.name}: {exc}") from None
            verbose = options["verbosity"] >= 1 and not outcome.skip_reason
            summary = summary_table if verbose else summary_line
            self.stdout.write(summary(integration, outcome))
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


def summary_table(integration: DeviceIntegration, o: ReconcileOutcome) -> str:
    """The reconcile as a few aligned rows (see integrations.management.terminal)."""
    checked = (
        f"{o.buckets_checked:,} device-hours: {o.buckets_missing:,} missing readings "
        f"({o.readings_missing:,}), {o.buckets_consistent:,} consistent, "
        f"{o.surplus_buckets:,} with surplus ({o.surplus_readings:,})"
    )
    rows = [
        ("window", f"{moment(o.window_start)} .. {moment(o.window_end)} UTC"),
        ("checked", f"count query refused, re-read: {o.fallback}" if o.fallback else checked),
        ("pages / calls", f"{o.pages:,} pages, {o.api_calls:,} API calls ({o.retries} retries)"),
        (
            "readings",
            f"{o.fetched:,} fetched, {o.recovered:,} recovered, {o.duplicates:,} duplicate",
        ),
        ("devices", f"{o.devices:,}"),
        ("duration", f"{o.duration:.1f} s"),
        (
            "verified",
            f"complete through {moment(o.verified_through)} UTC"
            if o.verified_through
            else "not moved",
        ),
        ("activity entry", entry_row(o.activity)),
    ]
    if o.dry_run:
        rows.append(("dry run", "nothing written"))
    if o.error:
        rows.append(("error", o.error))
    return table(f"{integration.name}: {o.status}", rows)


def _iso(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"
