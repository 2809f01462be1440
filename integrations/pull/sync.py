"""The pull: one run of one integration (DESIGN.md "Pull").

`sync_integration` is the one way in for the schedule, the admin's "Sync now" and `runsync`. A run
takes the integration's lease, fixes a closed window, refreshes the devices, streams the window's
readings page by page into `telemetry.ingest`, and only after everything is committed moves the
cursor. A failed run leaves the cursor, so the next run reads the window again: dedup makes that
safe. Every run is one activity entry, written when it starts and completed when it ends.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import F
from django.utils import timezone

from integrations import shutdown
from integrations.due import FORCEABLE, due, log_skip
from integrations.golioth.client import GoliothClient
from integrations.golioth.payloads import StreamReading
from integrations.models import ActivityLog, DeviceIntegration
from integrations.pull.connection import (
    EXPECTED_ERRORS,
    describe_error,
    make_client,
)
from integrations.pull.device_sync import (
    DeviceScope,
    ensure_devices,
    refresh_devices,
)
from integrations.pull.lease import Claim, Lease
from integrations.pull.outcomes import SyncOutcome, SyncProgress, page_progress
from integrations.pull.windows import pull_window
from integrations.sync_settings import SettingsError, SyncSettings
from telemetry.ingest import (
    BATCH_SIZE,
    IngestResult,
    Reading,
    count_new_readings,
    ingest_readings,
)
from telemetry.status import refresh_statuses

logger = logging.getLogger(__name__)

# A filter naming this many devices or fewer is fetched per device: one call each beats paging
# the whole project's stream.
PER_DEVICE_LIMIT = 5
# Readings per ingest transaction: many pages each (see telemetry.ingest.BATCH_SIZE), but never
# more than FLUSH_SECONDS of fetching.
INGEST_BATCH_SIZE = BATCH_SIZE
FLUSH_SECONDS = 2.0

Status = ActivityLog.Status


@dataclass
class _Run:
    integration: DeviceIntegration
    settings: SyncSettings
    now: datetime
    start: datetime
    end: datetime
    source: str
    outcome: SyncOutcome
    device_ids: frozenset[str] | None = None
    dry_run: bool = False
    move_cursor: bool = False
    claim: Claim | None = None  # None in a dry run, which holds nothing and writes nothing
    progress: Callable[[SyncProgress], None] | None = None
    pages: int = 0
    started: float = field(default_factory=time.monotonic)


# --- the run -------------------------------------------------------------------------------------


def sync_integration(
    integration: DeviceIntegration | int,
    *,
    trigger: str = ActivityLog.Trigger.SCHEDULE,
    force: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
    device_ids: list[str] | None = None,
    dry_run: bool = False,
    progress: Callable[[SyncProgress], None] | None = None,
    move_cursor: bool = True,
    now: datetime | None = None,
) -> SyncOutcome:
    """One pull of one integration; never raises for Golioth or data problems (see the outcome),
    only ValueError for an empty backfill window.

    `since`/`until` make it a backfill, which never moves the live cursor; so do `device_ids`
    (part of the fleet only), `move_cursor=False` and `dry_run` (fetch and count, write nothing).
    `force` ignores syncEnabled, paused and the time window, never the lease. `now` is the clock
    the window and the time window are judged by (tests set it).
    """
    # Fresh state (cursor, status, settings): another process may have run or edited it since.
    if isinstance(integration, DeviceIntegration):
        integration.refresh_from_db()
    else:
        integration = DeviceIntegration.objects.get(pk=integration)
    now = now or timezone.now()
    decision = due(integration, now=now)
    if not force and (reason := decision.skip_reason):
        forceable = decision.hold in FORCEABLE
        return _skip(integration, reason, trigger=trigger, forceable=forceable)
    try:
        sync_settings = integration.sync_settings
    except SettingsError as exc:
        return _skip(integration, f"settings are invalid: {exc}", trigger=trigger)
    start, end = pull_window(integration, sync_settings, now=now, since=since, until=until)
    run = _Run(
        integration=integration,
        settings=sync_settings,
        now=now,
        start=start,
        end=end,
        source="backfill" if since else "sync",
        outcome=SyncOutcome(
            integration.pk, Status.STARTED, window_start=start, window_end=end, dry_run=dry_run
        ),
        device_ids=frozenset(device_ids) if device_ids is not None else None,
        dry_run=dry_run,
        move_cursor=move_cursor and since is None and device_ids is None and not dry_run,
        progress=progress,
    )
    if not dry_run and not _begin(run, trigger=trigger):
        return _skip(integration, "already running", trigger=trigger)
    return _execute(run)


def _begin(run: _Run, *, trigger: str) -> bool:
    """Take the lease and open the run's activity entry; False when another run holds it."""
    lease = Lease(run.integration.pk)
    if not lease.acquire():
        return False
    kinds = ActivityLog.ActivityType
    # Holding the lease, no other run of this integration is alive: a run still `started` died.
    ActivityLog.objects.abandon_started(
        run.integration,
        activity_types=[kinds.SYNC_IMPORT, kinds.BACKFILL],
        reason="This run stopped without finishing (its worker died or was killed); "
        "a later run read its window again.",
    )
    activity = ActivityLog.objects.start(
        run.integration,
        activity_type=kinds.BACKFILL if run.source == "backfill" else kinds.SYNC_IMPORT,
        trigger=trigger,
        window_start=run.start,
        window_end=run.end,
        metadata={"lease": lease.owner},
    )
    run.claim = Claim(lease, activity)
    run.outcome.activity = activity
    return True


def _execute(run: _Run) -> SyncOutcome:
    client = None
    try:
        client = make_client(run.integration)
        _pull(run, client)
    except shutdown.ShutdownRequestedError:
        _count_calls(run, client)
        return _interrupt(run)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, none is hidden
        _count_calls(run, client)
        return _fail(run, exc)
    finally:
        if client is not None:
            client.close()
    _count_calls(run, client)
    return _succeed(run)


def _pull(run: _Run, client: GoliothClient) -> None:
    scope = refresh_devices(
        client,
        integration=run.integration,
        sync_settings=run.settings,
        now=run.now,
        device_ids=run.device_ids,
        write=not run.dry_run,
        on_page=lambda: _between_pages(run),
    )
    run.outcome.devices = len(scope.devices)
    pages = _reading_pages(run, scope, _stream_pages(run, scope, client))
    if run.claim is None:
        for readings in pages:
            _count(run, count_new_readings(readings, integration_id=run.integration.pk))
    else:
        _store(run, run.claim, pages)
        refresh_statuses(run.integration.pk, now=run.now, offline_after=run.settings.offline_after)


def _count(run: _Run, result: IngestResult) -> None:
    """Add a committed batch to the outcome at once: a run that fails later still reports
    what it stored (issue 9: a failed run said inserted=0 over thousands of rows)."""
    outcome = run.outcome
    outcome.inserted += result.inserted
    outcome.duplicates += result.duplicates
    outcome.corrected += result.corrected
    outcome.rejected += result.rejected
    outcome.rejected_reason = outcome.rejected_reason or result.rejected_reason


def _store(run: _Run, claim: Claim, pages: Iterator[list[Reading]]) -> None:
    """Ingest pages gathered into big batches (far cheaper per reading than a transaction per
    page), committed at least every FLUSH_SECONDS: a slow run's readings show up as it goes, and
    a killed worker loses seconds of fetching, not the whole window. One batch held at most.
    A qcluster that is stopping gets the batch in hand stored, then the run ends."""
    batch: list[Reading] = []
    flushed = time.monotonic()
    for readings in itertools.chain(pages, [None]):
        if readings is not None:
            batch += readings
        stopping = shutdown.requested()
        due = time.monotonic() - flushed >= FLUSH_SECONDS or readings is None or stopping
        if batch and (len(batch) >= INGEST_BATCH_SIZE or due):
            result = ingest_readings(
                batch,
                integration_id=run.integration.pk,
                source=run.source,
                activity_id=claim.activity.pk,
                time_tolerance=timedelta(seconds=run.settings.time_tolerance_seconds),
                batch_size=INGEST_BATCH_SIZE,
            )
            _count(run, result)
            batch, flushed = [], time.monotonic()
        shutdown.check()


def _renew(run: _Run) -> None:
    if run.claim is not None:
        run.claim.lease.renew()


def _between_pages(run: _Run) -> None:
    _renew(run)
    shutdown.check()


def _stream_pages(
    run: _Run, scope: DeviceScope, client: GoliothClient
) -> Iterator[list[StreamReading]]:
    """The window's readings page by page: per device when only a few are named, else one
    project-wide query with every filter Golioth can apply itself."""
    if run.start >= run.end or (scope.named is not None and not scope.named):
        return
    if scope.named is not None and len(scope.named) <= PER_DEVICE_LIMIT:
        for device_id in sorted(scope.named):
            yield from client.iter_device_stream_pages(
                device_id=device_id, start=run.start, end=run.end
            )
        return
    named = sorted(scope.named) if scope.named is not None else None
    yield from client.iter_stream_pages(
        start=run.start, end=run.end, device_ids=named, tags=scope.tags
    )


def _reading_pages(
    run: _Run, scope: DeviceScope, pages: Iterator[list[StreamReading]]
) -> Iterator[list[Reading]]:
    """Each page as Readings of the run's devices; between pages, renew the lease and report."""
    for page in pages:
        run.outcome.fetched += len(page)
        page_read = page
        if scope.restricted:
            page = [r for r in page if r.device_external_id in scope.devices]
        elif not run.dry_run:
            ensure_devices(run.integration, scope, {r.device_external_id for r in page})
        devices = scope.devices
        yield [
            Reading(
                devices.get(r.device_external_id, 0), r.device_external_id, r.timestamp, r.payload
            )
            for r in page
        ]
        _renew(run)
        run.pages += 1
        run.outcome.pages = run.pages
        if run.progress:
            elapsed = time.monotonic() - run.started
            run.progress(
                page_progress(
                    page_read, pages_done=run.pages, readings=run.outcome.fetched, elapsed=elapsed
                )
            )


def _count_calls(run: _Run, client: GoliothClient | None) -> None:
    if client is not None:
        run.outcome.api_calls, run.outcome.retries = client.stats.calls, client.stats.retries
        run.outcome.rereads = client.window_stats.rereads


# --- endings -------------------------------------------------------------------------------------


def _succeed(run: _Run) -> SyncOutcome:
    outcome = run.outcome
    outcome.status = Status.PARTIAL if outcome.rejected else Status.SUCCESS
    outcome.duration = time.monotonic() - run.started
    if run.claim is None:
        return outcome
    state = {
        "last_sync_at": timezone.now(),
        "last_sync_status": outcome.status,
        "sync_error": "",
        "consecutive_failures": 0,
        "last_skip_reason": "",
    }
    if run.move_cursor:
        state["sync_cursor"] = max(run.end, run.integration.sync_cursor or run.end)
    saved = run.claim.lease.release(**state)
    outcome.cursor_moved = saved and run.move_cursor
    if not saved:
        logger.warning(
            "Sync of %s finished after its lease was taken over; state not saved", run.integration
        )
    error = ""
    if outcome.rejected:
        reason = outcome.rejected_reason or "payload cannot be stored"
        were = "reading was" if outcome.rejected == 1 else "readings were"
        error = f"{outcome.rejected:,} {were} not stored: {reason}"
    _finish_activity(run, run.claim, error=error)
    return outcome


def _fail(run: _Run, exc: Exception) -> SyncOutcome:
    outcome = run.outcome
    outcome.status = Status.FAILED
    outcome.error = describe_error(exc, integration=run.integration)
    outcome.duration = time.monotonic() - run.started
    if run.claim is None:
        return outcome
    if not isinstance(exc, EXPECTED_ERRORS):
        logger.exception("Sync of %s failed unexpectedly", run.integration)
    pk = run.integration.pk
    DeviceIntegration.objects.filter(pk=pk).update(
        last_sync_at=timezone.now(),
        last_sync_status=Status.FAILED,
        sync_error=outcome.error,
        consecutive_failures=F("consecutive_failures") + 1,
    )
    run.claim.lease.release()
    failures = DeviceIntegration.objects.values_list("consecutive_failures", flat=True).get(pk=pk)
    if failures >= run.settings.max_consecutive_failures:
        reason = f"Sync stopped after {failures} consecutive failures. Last: {outcome.error}"
        DeviceIntegration.objects.filter(pk=pk).update(
            status=DeviceIntegration.Status.ERROR, sync_error=reason
        )
        outcome.error = reason
    _finish_activity(run, run.claim, error=outcome.error)
    return outcome


def _interrupt(run: _Run) -> SyncOutcome:
    """The qcluster is stopping: what was stored stays, the cursor stays where it was (the
    window's pages come newest first, so no earlier point of it is known complete), and the
    lease is freed with the interval reset, so the first dispatch after the restart reads the
    window again. Not a failure: it counts towards no stop-after-failures."""
    outcome = run.outcome
    outcome.status = Status.FAILED
    outcome.duration = time.monotonic() - run.started
    outcome.error = (
        f"Interrupted by shutdown: the qcluster was stopped after {run.pages} pages "
        f"({outcome.inserted:,} readings stored); the cursor did not move, the next run reads "
        "this window again."
    )
    logger.info("Sync of %s interrupted by shutdown after %d pages", run.integration, run.pages)
    if run.claim is None:
        return outcome
    run.claim.lease.release(last_queued_at=None)
    run.claim.activity.metadata["interrupted"] = "shutdown"
    _finish_activity(run, run.claim, error=outcome.error)
    return outcome


def _finish_activity(run: _Run, claim: Claim, *, error: str) -> None:
    o = run.outcome
    message = (
        f"{o.devices} devices, {o.fetched} readings fetched, {o.inserted} new, "
        f"{o.duplicates} duplicates, {o.api_calls} API calls ({o.retries} retries)"
    )
    metadata = {
        **claim.activity.metadata,
        "pages": run.pages,
        "corrected": o.corrected,
        "rejected": o.rejected,
        "cursor_moved": o.cursor_moved,
        # Slices of the window read again because Golioth's data moved while they were paged.
        "rereads": o.rereads,
    }
    if run.device_ids is not None:
        metadata["device_ids"] = sorted(run.device_ids)
    ActivityLog.objects.finish(
        claim.activity,
        status=o.status,
        message=message,
        error_message=error,
        devices_seen=o.devices,
        readings_fetched=o.fetched,
        readings_inserted=o.inserted,
        readings_duplicate=o.duplicates,
        api_calls=o.api_calls,
        retries=o.retries,
        metadata=metadata,
    )


# --- skips ---------------------------------------------------------------------------------------


def _skip(
    integration: DeviceIntegration, reason: str, *, trigger: str, forceable: bool = False
) -> SyncOutcome:
    entry = log_skip(integration, reason, trigger=trigger)
    return SyncOutcome(
        integration.pk,
        Status.SKIPPED,
        activity=entry,
        skip_reason=reason[:200],
        skip_forceable=forceable,
    )
