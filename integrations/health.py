"""GET /healthz: is the database answering, and is the scheduler dispatching?

For load balancers and uptime monitors: no login, no secrets, one small JSON body. 200 when both
hold; 503 with the reason otherwise, so a stopped qcluster (nothing dispatches any more) pages
someone instead of letting the mirror silently fall behind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from integrations.models import Heartbeat
from integrations.scheduling import DISPATCH_BEAT

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthReport:
    ok: bool
    reason: str
    last_dispatch: datetime | None = None

    def to_json(self, *, now: datetime) -> dict:
        age = (now - self.last_dispatch).total_seconds() if self.last_dispatch else None
        return {
            "status": "ok" if self.ok else "failing",
            "reason": self.reason,
            "last_dispatch": self.last_dispatch.isoformat() if self.last_dispatch else None,
            "last_dispatch_age_seconds": round(age) if age is not None else None,
        }


def check_health(*, now: datetime) -> HealthReport:
    max_age = settings.GSYNC_HEALTH_MAX_DISPATCH_AGE
    try:
        beat = Heartbeat.objects.filter(name=DISPATCH_BEAT).values_list("beat_at", flat=True)
        last = beat.first()
    except DatabaseError as exc:
        # The driver's message can name hosts and users: log it, answer with the class only.
        logger.warning("healthz: database check failed: %s", exc)
        return HealthReport(ok=False, reason=f"database unavailable ({type(exc).__name__})")
    if last is None:
        return HealthReport(
            ok=False,
            reason="the scheduler has never dispatched: is a qcluster worker running, and did "
            "`manage.py migrate` (or `setup_schedules`) create the schedule?",
        )
    age = (now - last).total_seconds()
    if age > max_age:
        return HealthReport(
            ok=False,
            reason=f"the scheduler last dispatched {round(age)} s ago (limit {max_age} s): "
            "is a qcluster worker running?",
            last_dispatch=last,
        )
    return HealthReport(
        ok=True, reason="database answers; scheduler dispatching", last_dispatch=last
    )


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    now = timezone.now()
    report = check_health(now=now)
    return JsonResponse(report.to_json(now=now), status=200 if report.ok else 503)
