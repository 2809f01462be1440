"""GET /healthz: is the database answering, is the scheduler dispatching, are the ingest
workers keeping up with the queued webhooks?

For load balancers and uptime monitors: no login, no secrets, one small JSON body. 200 when all
hold; 503 with the reason otherwise, so a stopped qcluster (nothing dispatches any more) or a
stopped ingest worker (webhooks pile up unstored) pages someone instead of letting the mirror
silently fall behind. The body always carries the queue's backlog and its oldest delivery's age.
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

from integrations.models import Heartbeat, WebhookDelivery
from integrations.scheduling import DISPATCH_BEAT

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthReport:
    ok: bool
    reason: str
    last_dispatch: datetime | None = None
    # Webhook deliveries waiting for an ingest worker (counted up to BACKLOG_COUNTED), and when
    # the oldest of them arrived.
    backlog: int = 0
    oldest_queued: datetime | None = None

    def to_json(self, *, now: datetime) -> dict:
        age = (now - self.last_dispatch).total_seconds() if self.last_dispatch else None
        queued_age = (now - self.oldest_queued).total_seconds() if self.oldest_queued else None
        return {
            "status": "ok" if self.ok else "failing",
            "reason": self.reason,
            "last_dispatch": self.last_dispatch.isoformat() if self.last_dispatch else None,
            "last_dispatch_age_seconds": round(age) if age is not None else None,
            "webhook_backlog": self.backlog,
            "oldest_queued_age_seconds": round(queued_age) if queued_age is not None else None,
        }


def check_health(*, now: datetime) -> HealthReport:
    try:
        beat = Heartbeat.objects.filter(name=DISPATCH_BEAT).values_list("beat_at", flat=True)
        last = beat.first()
        backlog, oldest = queue_backlog()
    except DatabaseError as exc:
        # The driver's message can name hosts and users: log it, answer with the class only.
        logger.warning("healthz: database check failed: %s", exc)
        return HealthReport(ok=False, reason=f"database unavailable ({type(exc).__name__})")
    report = _dispatch_health(last, now=now)
    max_wait = settings.GSYNC_HEALTH_MAX_QUEUE_AGE
    if report.ok and oldest is not None and (wait := (now - oldest).total_seconds()) > max_wait:
        shown = f"{backlog:,}" + ("+" if backlog > BACKLOG_COUNTED else "")
        reason = (
            f"{shown} webhook deliveries wait for an ingest worker, the oldest for "
            f"{round(wait)} s (limit {max_wait} s): is `manage.py ingest_worker` running?"
        )
        return HealthReport(False, reason, last, backlog=backlog, oldest_queued=oldest)
    return HealthReport(
        report.ok, report.reason, report.last_dispatch, backlog=backlog, oldest_queued=oldest
    )


# Counting a backlog of millions would make the probe slow: above this it says "at least".
BACKLOG_COUNTED = 100_000


def queue_backlog() -> tuple[int, datetime | None]:
    """Deliveries waiting for an ingest worker (up to BACKLOG_COUNTED + 1), and when the oldest
    arrived; both read through the partial index delivery_pending."""
    waiting = WebhookDelivery.objects.filter(outcome=WebhookDelivery.Outcome.QUEUED)
    oldest = waiting.order_by("id").values_list("received_at", flat=True).first()
    if oldest is None:
        return 0, None
    return waiting.order_by()[: BACKLOG_COUNTED + 1].count(), oldest


def _dispatch_health(last: datetime | None, *, now: datetime) -> HealthReport:
    max_age = settings.GSYNC_HEALTH_MAX_DISPATCH_AGE
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
