"""django-q2 glue: the one dispatch schedule, the dispatcher, and the tasks it queues.

What a run does lives in integrations.pull.sync; this module decides *when*, and keeps one
integration from being queued twice (`queued_at`, claimed with a conditional UPDATE) or run twice
(the lease, taken by sync.py). Every qcluster on every machine that shares the broker takes these
tasks, so a fleet of integrations spreads over all workers. Nothing here runs in `ready()`.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from integrations import shutdown
from integrations.due import Hold, due, log_skip, reconcile_due
from integrations.models import ActivityLog, DeviceIntegration, Heartbeat
from integrations.pruning import prune
from integrations.pull.reconcile import reconcile_integration
from integrations.pull.sync import sync_integration
from integrations.push.minutes import roll_up_webhook_minutes
from telemetry.partitioning import ensure_partitions

logger = logging.getLogger(__name__)

DISPATCH_FUNC = "integrations.scheduling.dispatch_due_integrations"
RUN_FUNC = "integrations.scheduling.run_sync_task"
RECONCILE_FUNC = "integrations.scheduling.run_reconcile_task"
PRUNE_FUNC = "integrations.scheduling.run_prune_task"
SCHEDULE_NAME = "gsync: dispatch due integrations"
# The dispatcher itself must finish well within its period (django-q2 kills it after this).
DISPATCH_TIMEOUT_SECONDS = 50
DISPATCH_BEAT = "dispatch"
# The name predates activity and telemetry retention; kept so the daily claim carries over.
PRUNE_BEAT = "prune_deliveries"
PRUNE_EVERY = timedelta(days=1)
# Of the task timeout: a prune that has not caught up stops cleanly, and tomorrow's goes on.
PRUNE_SHARE_OF_TIMEOUT = 2 / 3


# --- the schedule --------------------------------------------------------------------------------


def ensure_schedules(*, schedule_model: type[Schedule] | None = None) -> None:
    """Create or repair the one dispatch schedule; run twice (or by two deploys), still one.

    `schedule_model` lets the data migration pass its historical model.
    """
    model = schedule_model or Schedule
    fields = {
        "name": SCHEDULE_NAME,
        "schedule_type": "I",  # Schedule.MINUTES; historical models have no class constants
        "minutes": 1,
        "repeats": -1,
        "args": None,
        "kwargs": repr({"q_options": {"timeout": DISPATCH_TIMEOUT_SECONDS}}),
        "cluster": None,
    }
    with transaction.atomic():
        existing = list(model.objects.filter(func=DISPATCH_FUNC).order_by("pk"))
        if not existing:
            # On a whole minute (already past, so the first dispatch comes within 30 s).
            model.objects.create(
                func=DISPATCH_FUNC, next_run=dispatch_tick(timezone.now()), **fields
            )
            return
        keep, *extra = existing
        model.objects.filter(pk__in=[s.pk for s in extra]).delete()
        if keep.next_run is None or keep.next_run != dispatch_tick(keep.next_run):
            fields["next_run"] = dispatch_tick(keep.next_run or timezone.now())
        model.objects.filter(pk=keep.pk).update(**fields)


# --- the dispatcher ------------------------------------------------------------------------------


def dispatch_due_integrations(*, now: datetime | None = None) -> list[int]:
    """Queue one run per due integration; return their ids. Runs every minute on some worker.

    Due as `integrations.due.due` says, and not already queued or running (the claim).
    """
    now = now or timezone.now()
    tick = dispatch_tick(now)
    queued = [
        pk for pk in _due_integration_ids(now=now, tick=tick) if _enqueue(pk, now=now, tick=tick)
    ]
    _maybe_prune(now=now)
    roll_up_webhook_minutes(now=now)
    Heartbeat.objects.update_or_create(
        name=DISPATCH_BEAT, defaults={"beat_at": now, "detail": {"queued": len(queued)}}
    )
    if queued:
        logger.info("dispatch: queued %d integration(s): %s", len(queued), queued)
    return queued


def dispatch_tick(now: datetime) -> datetime:
    """The whole minute a dispatch at `now` belongs to.

    The schedule fires on whole minutes, but the qcluster scheduler looks at it only every 30 s,
    so a dispatch lands up to ~30 s into its minute. Judging due-ness at the minute (and stamping
    it as the queue time) keeps a 60 s interval at one run a minute and a 300 s one at every
    fifth, however late each dispatch lands; an extra dispatch in the same minute finds nothing
    new to do.
    """
    return now.replace(second=0, microsecond=0)


def _due_integration_ids(*, now: datetime, tick: datetime) -> list[int]:
    due_ids = []
    for integration in DeviceIntegration.objects.filter(_idle(now)).order_by("pk"):
        decision = due(integration, now=now, tick=tick)
        if decision.runs:
            due_ids.append(integration.pk)
        elif (reason := decision.skip_reason) and reason != integration.last_skip_reason:
            # Says why in the activity log, once per reason; never calls Golioth.
            log_skip(integration, reason, trigger=ActivityLog.Trigger.SCHEDULE)
        elif decision.hold == Hold.WAITING and reconcile_due(integration, now=tick):
            # A sync due the same minute goes first; the reconcile then waits one dispatch.
            _enqueue_reconcile(integration.pk, now=now)
    return due_ids


def _idle(now: datetime) -> Q:
    """Neither waiting in the queue nor running: never queue a second copy behind a slow run.

    A queued run that no worker started within GSYNC_QUEUE_STALE_SECONDS (a cluster that died
    with it, a purged queue) no longer counts, so it cannot block the integration forever.
    """
    stale = now - timedelta(seconds=settings.GSYNC_QUEUE_STALE_SECONDS)
    not_queued = Q(queued_at__isnull=True) | Q(queued_at__lt=stale)
    not_running = Q(locked_until__isnull=True) | Q(locked_until__lte=now)
    return not_queued & not_running


def _enqueue(
    pk: int,
    *,
    now: datetime,
    tick: datetime | None = None,
    trigger: str = "schedule",
    live: bool = True,
    func: str = RUN_FUNC,
    **task_kwargs: Any,
) -> bool:
    """Claim the integration (one UPDATE that only one caller wins) and queue its run.

    `live`: a run of the live window, from which the interval counts (from `tick`, the dispatch
    minute, when the dispatcher queues it); a backfill leaves the interval alone.
    """
    stamps = {"queued_at": now, "last_queued_at": tick or now} if live else {"queued_at": now}
    claimed = DeviceIntegration.objects.filter(pk=pk).filter(_idle(now)).update(**stamps)
    if not claimed:
        return False
    try:
        async_task(
            func,
            pk,
            trigger,
            task_name=f"{'sync' if func == RUN_FUNC else 'reconcile'}-{pk}-{trigger}",
            group="gsync-sync",
            **task_kwargs,
        )
    except Exception:
        # The broker refused: release the claim so the next dispatch (or click) tries again.
        DeviceIntegration.objects.filter(pk=pk, queued_at=now).update(queued_at=None)
        raise
    return True


# --- the tasks -----------------------------------------------------------------------------------


def run_sync_task(
    integration_id: int,
    trigger: str = "schedule",
    *,
    force: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """One run of one integration, in a worker; returns a summary for django-q2's task record."""
    # From here on the lease (taken inside sync_integration) keeps a second run out.
    DeviceIntegration.objects.filter(pk=integration_id).update(queued_at=None)
    if shutdown.requested():
        return _handed_back(integration_id)
    integration = DeviceIntegration.objects.filter(pk=integration_id).first()
    if integration is None:
        logger.info("run_sync_task: integration %s no longer exists", integration_id)
        return {"status": "skipped", "skip_reason": "integration deleted"}
    outcome = sync_integration(integration, trigger=trigger, force=force, since=since, until=until)
    return {
        "status": outcome.status,
        "skip_reason": outcome.skip_reason,
        "inserted": outcome.inserted,
        "duplicates": outcome.duplicates,
        "error": outcome.error,
    }


def run_reconcile_task(integration_id: int, trigger: str = "schedule") -> dict[str, Any]:
    """One reconcile of one integration, in a worker (the sync's lease keeps the two apart)."""
    DeviceIntegration.objects.filter(pk=integration_id).update(queued_at=None)
    if shutdown.requested():
        return _handed_back(integration_id)
    integration = DeviceIntegration.objects.filter(pk=integration_id).first()
    if integration is None:
        return {"status": "skipped", "skip_reason": "integration deleted"}
    try:
        outcome = reconcile_integration(integration, trigger=trigger)
    except ValueError as exc:  # an empty window: nothing synced yet to check
        return {"status": "skipped", "skip_reason": str(exc)}
    return {
        "status": outcome.status,
        "skip_reason": outcome.skip_reason,
        "recovered": outcome.recovered,
        "missing": outcome.buckets_missing,
        "error": outcome.error,
    }


def _handed_back(integration_id: int) -> dict[str, Any]:
    """A task handed to a worker of a stopping qcluster (django-q2 hands out what it had fetched
    before the stop): not started, so the first dispatch after the restart queues it again."""
    logger.info("integration %s: not started, the qcluster is stopping", integration_id)
    return {"status": "skipped", "skip_reason": "the qcluster is stopping"}


def _enqueue_reconcile(pk: int, *, now: datetime, trigger: str = "schedule") -> bool:
    # Claimed like a sync (queued_at), but not a live run: the sync interval is left alone.
    return _enqueue(pk, now=now, trigger=trigger, live=False, func=RECONCILE_FUNC)


def enqueue_reconcile(integration: DeviceIntegration, *, trigger: str = "admin") -> bool:
    """Queue a reconcile at once ("Verify completeness"); False when a run is queued or
    running."""
    return _enqueue_reconcile(integration.pk, now=timezone.now(), trigger=trigger)


def enqueue_sync(integration: DeviceIntegration, *, trigger: str = "admin") -> bool:
    """Queue a run at once ("Sync now"), ignoring interval and time window; False when a run is
    already queued or running (a burst of clicks queues one)."""
    return _enqueue(integration.pk, now=timezone.now(), trigger=trigger, force=True)


def enqueue_backfill(integration: DeviceIntegration, *, since: datetime, until: datetime) -> bool:
    """Queue a backfill of [since, until) in a worker; it leaves the live cursor where it is.

    False when a run of the integration is already queued or running: try again after it.
    """
    if timezone.is_naive(since) or timezone.is_naive(until):
        raise ValueError("since and until need a time zone")
    if since >= until:
        raise ValueError("the start of a backfill must be before its end")
    return _enqueue(
        integration.pk,
        now=timezone.now(),
        trigger="admin",
        live=False,
        force=True,
        since=since,
        until=until,
    )


def run_prune_task() -> dict[str, Any]:
    """The daily maintenance, in a worker: the readings' partitions for the months ahead
    (telemetry.partitioning, PostgreSQL), then the prune (integrations.pruning). Its counts go
    to the log, to the prune heartbeat's detail and to django-q2's task record."""
    budget = settings.Q_CLUSTER["timeout"] * PRUNE_SHARE_OF_TIMEOUT
    # First: a month split out of the default partition may then go whole.
    created = ensure_partitions(now=timezone.now())
    results = prune(stop_at=time.monotonic() + budget)
    counts = {
        "deleted": {
            f"{r.kind} ({r.note or r.scope})": r.rows for r in results if r.cutoff is not None
        },
        "readings_unlinked": sum(r.unlinked for r in results),
        "partitions_created": created,
    }
    Heartbeat.objects.filter(name=PRUNE_BEAT).update(detail=counts)
    return counts


def prune_webhook_deliveries() -> dict[str, Any]:
    """The prune task's name before it pruned more than deliveries: tasks queued by the previous
    release still name it."""
    return run_prune_task()


def _maybe_prune(*, now: datetime) -> None:
    """Queue the daily prune; the conditional UPDATE lets one dispatcher a day win it."""
    Heartbeat.objects.get_or_create(name=PRUNE_BEAT, defaults={"beat_at": now - PRUNE_EVERY})
    won = Heartbeat.objects.filter(name=PRUNE_BEAT, beat_at__lte=now - PRUNE_EVERY).update(
        beat_at=now
    )
    if won:
        async_task(PRUNE_FUNC, task_name="prune", group="gsync-maintenance")
