"""`manage.py prune [--dry-run]`: what is older than its retention, how much, and delete it.

The daily task (integrations.scheduling.run_prune_task) does the same; this shows the figures
first: per kind (webhook deliveries, activity entries, each integration's readings) the rows
older than the cutoff, and the cutoff; on PostgreSQL, the monthly partitions of readings that go
whole (telemetry.partitioning).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from gsync.batches import BATCH_SIZE
from integrations.pruning import ACTIVITY, PARTITION, Pruned, prune, shown, summary

HEADER = ("kind", "integration", "older than", "rows")


class Command(BaseCommand):
    help = (
        "Show what is older than its retention (webhook deliveries: GSYNC_WEBHOOK_RETENTION_DAYS, "
        "activity entries: GSYNC_ACTIVITY_RETENTION_DAYS, readings: each integration's "
        "telemetryRetentionDays), then delete it in small batches. --dry-run deletes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="show the counts, delete nothing"
        )
        parser.add_argument(
            "--batch-size", type=int, default=BATCH_SIZE, metavar="N",
            help="rows per DELETE and transaction (default: %(default)s)",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"]
        if batch_size < 1:
            raise CommandError(f"--batch-size must be 1 or more (got {batch_size}).")
        now = timezone.now()
        for line in table(prune(now=now, dry_run=True)):
            self.stdout.write(line)
        if options["dry_run"]:
            self.stdout.write("Dry run: nothing deleted.")
            return
        deleted = prune(now=now, batch_size=batch_size)
        self.stdout.write(self.style.SUCCESS(f"Deleted: {summary(deleted)}."))


def table(results: list[Pruned]) -> list[str]:
    """The would-go figures as aligned columns, one row per kind (and integration)."""
    rows = [HEADER, *(_row(result) for result in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER) - 1)]
    lines = []
    for *cells, count in rows:
        padded = "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        lines.append(f"{padded}  {count}".rstrip())
    return lines


def _row(result: Pruned) -> tuple[str, str, str, str]:
    if result.cutoff is None:
        return (result.kind, result.scope, result.note, "-")
    if result.kind == PARTITION:
        kind, count = f"{result.kind} {result.note}", f"~{result.rows} (whole, estimated)"
        return (kind, result.scope, shown(result.cutoff), count)
    count = str(result.rows)
    if result.kind == ACTIVITY and result.unlinked:
        count += f" (linked by {result.unlinked} readings)"
    return (result.kind, result.scope, shown(result.cutoff), count)
