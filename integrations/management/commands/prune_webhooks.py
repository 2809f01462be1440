"""`manage.py prune_webhooks`: delete stored webhook deliveries older than the retention.

Kept from before `manage.py prune` (which prunes every kind) for scripts that call it; it runs
the same deletion (integrations.pruning.prune_deliveries), for deliveries only.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from integrations.pruning import days_before, prune_deliveries


class Command(BaseCommand):
    help = (
        "Delete webhook deliveries received more than N days ago "
        "(default: GSYNC_WEBHOOK_RETENTION_DAYS). `manage.py prune` prunes every kind; the "
        "scheduler does that daily."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than-days", type=int, metavar="N",
            default=settings.GSYNC_WEBHOOK_RETENTION_DAYS,
            help="age in days (default: %(default)s)",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than_days"]
        if days < 1:
            raise CommandError("--older-than-days must be 1 or more.")
        pruned = prune_deliveries(cutoff=days_before(timezone.now(), days))
        self.stdout.write(f"Deleted {pruned.rows} webhook deliveries older than {days} days.")
