"""`manage.py reprocess_webhooks`: run stored webhook deliveries through the parser again."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from integrations.management.commands.runsync import parse_moment
from integrations.models import ActivityLog, DeviceIntegration, WebhookDelivery
from integrations.push.deliveries import REPROCESSABLE, reprocess_deliveries

Outcome = WebhookDelivery.Outcome


class Command(BaseCommand):
    help = (
        "Re-process stored webhook deliveries (after a fix or a settings change): --failed, "
        "--rejected, --ignored and/or --id, narrowed by --since and --integration. Processed "
        "deliveries are never re-run. Exits non-zero when a delivery still fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--failed", action="store_true", help="deliveries that failed")
        parser.add_argument(
            "--rejected", action="store_true", help="deliveries rejected (e.g. unknown device)"
        )
        parser.add_argument(
            "--ignored",
            action="store_true",
            help="deliveries ignored (e.g. a path mirroredPaths did not include)",
        )
        parser.add_argument(
            "--id", action="append", dest="ids", type=int, metavar="N", help="this delivery"
        )
        parser.add_argument("--since", metavar="T", help="received at or after T (2026-03-01, 2h)")
        parser.add_argument("--integration", metavar="NAME", help="only this integration")

    def handle(self, *args: Any, **options: Any) -> None:
        deliveries = self._select(options)
        count = deliveries.count()
        if not count:
            self.stdout.write("No deliveries to re-process.")
            return
        self.stdout.write(f"Re-processing {count} deliveries...")
        result = reprocess_deliveries(deliveries.iterator(), trigger=ActivityLog.Trigger.MANUAL)
        self.stdout.write(result.describe())
        if result.failed:
            raise CommandError(
                f"{result.failed} deliveries still fail; see their error in the admin "
                "(Webhook deliveries, outcome: failed)",
                returncode=1,
            )

    def _select(self, options: dict[str, Any]):
        chosen = (("failed", Outcome.FAILED), ("rejected", Outcome.REJECTED),
                  ("ignored", Outcome.IGNORED))  # fmt: skip
        outcomes = [outcome for flag, outcome in chosen if options[flag]]
        if not outcomes and not options["ids"]:
            raise CommandError(
                "Say which deliveries: --failed, --rejected, --ignored and/or --id N."
            )
        deliveries = WebhookDelivery.objects.select_related("integration").order_by("received_at")
        if outcomes:
            deliveries = deliveries.filter(outcome__in=outcomes)
        if options["ids"]:
            deliveries = deliveries.filter(pk__in=options["ids"], outcome__in=REPROCESSABLE)
        if options["since"]:
            since = parse_moment(options["since"], now=timezone.now(), option="--since")
            deliveries = deliveries.filter(received_at__gte=since)
        if options["integration"]:
            if not DeviceIntegration.objects.filter(name=options["integration"]).exists():
                raise CommandError(f"No integration named {options['integration']!r}.")
            deliveries = deliveries.filter(integration__name=options["integration"])
        return deliveries
