from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django_q.models import Schedule

from integrations.scheduling import DISPATCH_FUNC, ensure_schedules


class Command(BaseCommand):
    help = (
        "Create or repair gsync's one django-q2 schedule (the dispatcher, every minute). "
        "`migrate` does this too; running it again changes nothing."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        ensure_schedules()
        schedule = Schedule.objects.get(func=DISPATCH_FUNC)
        self.stdout.write(
            self.style.SUCCESS(
                f"Schedule '{schedule.name}' (id {schedule.pk}): every {schedule.minutes} minute, "
                f"next run {schedule.next_run:%Y-%m-%d %H:%M:%S %Z}. Start a worker with "
                "`manage.py qcluster` to run it."
            )
        )
