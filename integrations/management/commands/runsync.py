"""`manage.py runsync`: the pull in the foreground, the same run the schedule starts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from integrations import moments
from integrations.management.terminal import entry_row, moment, progress_reporter, table
from integrations.models import ActivityLog, DeviceIntegration
from integrations.pull.outcomes import SyncOutcome
from integrations.pull.retention import reaches_past_retention
from integrations.pull.sync import sync_integration


def parse_moment(value: str, *, now: datetime, option: str) -> datetime:
    """integrations.moments.parse_moment, refused as a CommandError that names the option."""
    try:
        return moments.parse_moment(value, now=now)
    except ValueError as exc:
        raise CommandError(f"{option}: {exc}") from None


def parse_window(
    since_text: str | None, until_text: str | None
) -> tuple[datetime | None, datetime | None]:
    """--since/--until as runsync and reconcile take them (CommandError with the reason)."""
    now = timezone.now()
    since = until = None
    if since_text is not None:
        since = parse_moment(since_text, now=now, option="--since")
    if until_text is not None:
        until = parse_moment(until_text, now=now, option="--until")
    if until and not since:
        raise CommandError("--until needs --since (a window has a start)")
    if since and until and since >= until:
        raise CommandError(
            f"--since ({since:%Y-%m-%d %H:%M:%S}) must be before --until "
            f"({until:%Y-%m-%d %H:%M:%S}) UTC"
        )
    if since and since >= now:
        raise CommandError(f"--since ({since:%Y-%m-%d %H:%M:%S} UTC) is in the future")
    return since, until


def warn_past_retention(since: datetime | None, *, stderr: Any) -> None:
    # Said before the run, which still goes ahead: Golioth may keep more than the setting.
    if since and (warning := reaches_past_retention(since, now=timezone.now(), what="--since")):
        stderr.write(f"Warning: {warning}")


def select_integrations(names: list[str], *, every: bool) -> list[DeviceIntegration]:
    """The integrations named (in order, once each), or all; CommandError for unknown names."""
    if every:
        return list(DeviceIntegration.objects.order_by("name"))
    if not names:
        raise CommandError("name one or more integrations, or pass --all", returncode=2)
    found = {i.name: i for i in DeviceIntegration.objects.filter(name__in=names)}
    unknown = [n for n in names if n not in found]
    if unknown:
        known = (
            ", ".join(DeviceIntegration.objects.order_by("name").values_list("name", flat=True))
            or "none"
        )
        which = ", ".join(repr(n) for n in unknown)
        raise CommandError(f"no integration named {which} (known: {known})")
    return [found[n] for n in dict.fromkeys(names)]


class Command(BaseCommand):
    help = (
        "Pull Golioth data for the named integrations (or --all) now: the same run as the "
        "schedule's. --since/--until backfill without moving the live cursor; --dry-run fetches "
        "and counts without writing. On a terminal a progress bar runs; -v 2 prints every page, "
        "-v 0 one key=value line per integration. Exits non-zero when a run failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", metavar="INTEGRATION", help="integration names")
        parser.add_argument("--all", action="store_true", help="every integration")
        parser.add_argument("--since", metavar="T", help="backfill from T (2026-03-01, 2h, 3d)")
        parser.add_argument("--until", metavar="T", help="backfill up to T (default: now)")
        parser.add_argument(
            "--device",
            action="append",
            dest="devices",
            metavar="ID",
            help="only this Golioth device id (repeatable); the cursor stays",
        )
        parser.add_argument("--dry-run", action="store_true", help="fetch and count, write nothing")
        parser.add_argument(
            "--force",
            action="store_true",
            help="run even when disabled, paused or outside the time window (never twice at once)",
        )
        parser.add_argument(
            "--no-cursor", action="store_true", help="the live window, without moving the cursor"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        since, until = parse_window(options["since"], options["until"])
        warn_past_retention(since, stderr=self.stderr)
        integrations = select_integrations(options["names"], every=options["all"])
        failed = 0
        for integration in integrations:
            outcome = self._run(integration, since=since, until=until, options=options)
            verbose = options["verbosity"] >= 1 and not outcome.skip_reason
            summary = summary_table if verbose else summary_line
            self.stdout.write(summary(integration, outcome))
            failed += outcome.failed
        if failed:
            raise CommandError(f"{failed} of {len(integrations)} sync runs failed", returncode=1)

    def _run(
        self,
        integration: DeviceIntegration,
        *,
        since: datetime | None,
        until: datetime | None,
        options: dict[str, Any],
    ) -> SyncOutcome:
        reporter = progress_reporter(
            self.stdout, name=integration.name, verbosity=options["verbosity"]
        )
        with reporter as progress:
            try:
                return sync_integration(
                    integration,
                    trigger=ActivityLog.Trigger.MANUAL,
                    force=options["force"],
                    since=since,
                    until=until,
                    device_ids=options["devices"],
                    dry_run=options["dry_run"],
                    progress=progress,
                    move_cursor=not options["no_cursor"],
                )
            except ValueError as exc:  # an empty backfill window
                raise CommandError(f"{integration.name}: {exc}") from None


def summary_line(integration: DeviceIntegration, o: SyncOutcome) -> str:
    line = f"{integration.name}: {o.status}"
    if o.skip_reason:
        hint = "; --force runs it anyway" if o.skip_forceable else ""
        return f"{line} ({o.skip_reason}{hint})"
    line += (
        f" devices={o.devices} fetched={o.fetched} inserted={o.inserted}"
        f" duplicates={o.duplicates} api_calls={o.api_calls} retries={o.retries}"
        f" duration={o.duration:.1f}s window={_iso(o.window_start)}..{_iso(o.window_end)}"
    )
    if o.dry_run:
        line += " [dry run: nothing written; inserted = readings not stored yet]"
    if o.error:
        line += f" error: {o.error}"
    return line


def summary_table(integration: DeviceIntegration, o: SyncOutcome) -> str:
    """The run as a few aligned rows (see integrations.management.terminal)."""
    rows = [
        ("window", f"{moment(o.window_start)} .. {moment(o.window_end)} UTC"),
        ("pages / calls", f"{o.pages:,} pages, {o.api_calls:,} API calls ({o.retries} retries)"),
        (
            "readings",
            f"{o.fetched:,} fetched, {o.inserted:,} inserted, {o.duplicates:,} duplicate",
        ),
        ("devices", f"{o.devices:,}"),
        ("duration", f"{o.duration:.1f} s"),
        ("cursor", f"moved to {moment(o.window_end)} UTC" if o.cursor_moved else "unchanged"),
        ("activity entry", entry_row(o.activity)),
    ]
    if o.dry_run:
        rows.append(("dry run", "nothing written; inserted = readings not stored yet"))
    if o.error:
        rows.append(("error", o.error))
    return table(f"{integration.name}: {o.status}", rows)


def _iso(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"
