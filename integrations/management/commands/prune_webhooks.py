"""`manage.py prune_webhooks`: delete stored webhook deliveries older than the retention."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.push.deliveries import prune_deliveries


class Command(BaseCommand):
    help = (
        "Delete webhook deliveries received more than N days ago "
        "(default: GSYNC_WEBHOOK_RETENTION_DAYS). The scheduler does this daily too."
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
        deleted = prune_deliveries(older_than_days=days)
        self.stdout.write(f"Deleted {deleted} webhook deliveries older than {days} days.")
