"""Reconciliation: prove the mirror complete against Golioth, and repair what is missing.

The pull reads each window once (plus its overlap). Readings that reach Golioth later with older
times (devices that buffer offline and upload back-dated batches) and readings the push lost are
caught here: Golioth's count of readings per device per hour over a lookback (the aggregate
query, docs "Querying Stream Data") against gsync's own count on the same time basis. Only the
device-hours where Golioth has more are read again, per device when few differ in an hour,
project-wide for that hour otherwise. Where gsync has more (time-precision doubles, data deleted
upstream) it is reported as surplus, never deleted.

Golioth can hold one reading twice (two pipelines delivering to LightDB Stream). A device-hour
whose re-read readings dedupe to what gsync holds is consistent, not missing: it is remembered
(`ConsistentBucket`) with both counts, so the next reconcile passes over it instead of reading
the same hour every time.

Cost: ceil(device-hours / 100) calls for the counts, plus the pages of what is repaired. If
Golioth refuses the count query, the lookback is read again as a backfill that does not move the
cursor, and the entry says so.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from integrations import shutdown
from integrations.golioth.client import GoliothClient
from integrations.golioth.errors import (
    AuthenticationError,
    GoliothError,
    MalformedResponseError,
    PermissionDeniedError,
    RateLimitedError,
    UnavailableError,
)
from integrations.golioth.payloads import StreamReading
from integrations.models import ActivityLog, ConsistentBucket, DeviceIntegration
from integrations.pull.completeness import (
    BUCKET,
    BUCKET_NAME,
    Key,
    compare,
    judge,
    local_counts,
    remember,
    remembered,
)
from integrations.pull.connection import EXPECTED_ERRORS, describe_error, make_client
from integrations.pull.device_sync import DeviceScope, ensure_devices
from integrations.pull.lease import Claim, Lease
from integrations.pull.outcomes import ReconcileOutcome, SyncProgress, page_progress
from integrations.pull.windows import reconcile_window
from integrations.sync_settings import SettingsError, SyncSettings
from telemetry.ingest import IngestResult, Reading, ingest_readings
from telemetry.keys import payload_digest
from telemetry.models import Device

logger = logging.getLogger(__name__)

# An hour in which this many devices or fewer differ is re-read per device.
PER_DEVICE_LIMIT = 5
# Errors that say "Golioth will not answer this query", not "Golioth is down" or "the key is bad".
_NOT_REFUSALS = (
    AuthenticationError,
    PermissionDeniedError,
    RateLimitedError,
    UnavailableError,
    MalformedResponseError,
)

Status = ActivityLog.Status


@dataclass
class _Run:
    integration: DeviceIntegration
    settings: SyncSettings
    start: datetime
    end: datetime
    outcome: ReconcileOutcome
    scope: DeviceScope
    dry_run: bool
    claim: Claim | None = None  # None in a dry run
    progress: Callable[[SyncProgress], None] | None = None
    pages: int = 0
    started: float = field(default_factory=time.monotonic)


def reconcile_integration(
    integration: DeviceIntegration | int,
    *,
    trigger: str = ActivityLog.Trigger.SCHEDULE,
    since: datetime | None = None,
    until: datetime | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Callable[[SyncProgress], None] | None = None,
) -> ReconcileOutcome:
    """One reconcile of one integration over its lookback (or [since, until)); never raises
    for Golioth or data problems (see the outcome), only ValueError for an empty window.

    `dry_run` compares and reports what it would repair, writing nothing. `progress` hears of
    every page re-read (`manage.py reconcile` draws its bar from it).
    """
    if isinstance(integration, DeviceIntegration):
        integration.refresh_from_db()
    else:
        integration = DeviceIntegration.objects.get(pk=integration)
    now = now or timezone.now()
    try:
        sync_settings = integration.sync_settings
    except SettingsError as exc:
        return _skip(integration, f"settings are invalid: {exc}", trigger=trigger)
    start, end = reconcile_window(integration, sync_settings, now=now, since=since, until=until)
    run = _Run(
        integration=integration,
        settings=sync_settings,
        start=start,
        end=end,
        outcome=ReconcileOutcome(
            integration.pk, Status.STARTED, window_start=start, window_end=end, dry_run=dry_run
        ),
        scope=_scope(integration, sync_settings, now=now),
        dry_run=dry_run,
        progress=progress,
    )
    if not dry_run and not _begin(run, trigger=trigger):
        return _skip(integration, "a sync or reconcile is already running", trigger=trigger)
    client = None
    try:
        client = make_client(integration)
        _reconcile(run, client)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, none is hidden
        if not isinstance(exc, EXPECTED_ERRORS):
            logger.exception("Reconcile of %s failed unexpectedly", integration)
        run.outcome.error = describe_error(exc, integration=integration)
        return _finish(run, client, status=Status.FAILED)
    finally:
        if client is not None:
            client.close()
    status = Status.PARTIAL if run.outcome.buckets_still_missing else Status.SUCCESS
    return _finish(run, client, status=status)


def _scope(
    integration: DeviceIntegration, sync_settings: SyncSettings, *, now: datetime
) -> DeviceScope:
    """The devices whose counts count: the filter's, judged on the rows the pull keeps (a
    reconcile lists no devices: its cost is the counts and the repairs)."""
    devices = Device.objects.filter(integration=integration)
    device_filter = sync_settings.device_filter
    if device_filter is None:
        return DeviceScope(devices=dict(devices.values_list("external_id", "pk")), restricted=False)
    wanted = {d.external_id: d.pk for d in devices if device_filter.matches(d, now=now)}
    return DeviceScope(devices=wanted, restricted=True)


def _begin(run: _Run, *, trigger: str) -> bool:
    lease = Lease(run.integration.pk)
    if not lease.acquire():
        return False
    ActivityLog.objects.abandon_started(
        run.integration,
        activity_types=[ActivityLog.ActivityType.RECONCILE],
        reason="This reconcile stopped without finishing (its worker died or was killed).",
    )
    activity = ActivityLog.objects.start(
        run.integration,
        activity_type=ActivityLog.ActivityType.RECONCILE,
        trigger=trigger,
        direction=ActivityLog.Direction.OUTGOING,
        window_start=run.start,
        window_end=run.end,
        message="Verifying completeness",
        metadata={"lease": lease.owner},
    )
    run.claim = Claim(lease, activity)
    run.outcome.activity = activity
    return True


# --- compare and repair --------------------------------------------------------------------------


def _reconcile(run: _Run, client: GoliothClient) -> None:
    try:
        remote = _remote_counts(run, client)
    except GoliothError as exc:
        if isinstance(exc, _NOT_REFUSALS):
            raise
        _fallback(run, client, reason=str(exc))
        return
    local = local_counts(run.integration, run.start, run.end)
    found = compare(remote, local, remembered(run.integration, run.start, run.end))
    outcome = run.outcome
    outcome.buckets_checked = len(found.checked)
    outcome.devices = len({device_id for _, device_id in found.checked})
    outcome.buckets_missing = len(found.missing)
    outcome.readings_missing = found.readings_missing
    outcome.buckets_consistent = found.consistent
    outcome.surplus_buckets, outcome.surplus_readings = (
        found.surplus_buckets,
        found.surplus_readings,
    )
    if run.dry_run or not found.missing:
        return
    fetched = _repair(run, client, found.missing)
    after = local_counts(run.integration, run.start, run.end, keys=found.missing.keys())
    verdict = judge(found.missing, local, after, fetched)
    outcome.buckets_repaired = verdict.repaired
    outcome.buckets_still_missing = verdict.still_missing
    outcome.buckets_consistent += len(verdict.consistent)
    remember(run.integration, verdict.consistent)


def _remote_counts(run: _Run, client: GoliothClient) -> dict[Key, int]:
    counts: dict[Key, int] = {}
    scope = run.scope
    for row in client.iter_stream_counts(start=run.start, end=run.end, bucket=BUCKET_NAME):
        if scope.restricted and row.device_external_id not in scope.devices:
            continue
        _renew(run)
        counts[(row.bucket_start, row.device_external_id)] = row.count
    return counts


def _repair(run: _Run, client: GoliothClient, missing: dict[Key, int]) -> dict[Key, int]:
    """Read the missing device-hours again and ingest them; returns the distinct readings
    Golioth sent per device-hour."""
    by_hour: dict[datetime, list[str]] = defaultdict(list)
    for bucket, device_id in missing:
        by_hour[bucket].append(device_id)
    distinct: dict[Key, set[tuple[datetime, str]]] = defaultdict(set)
    for bucket, device_ids in sorted(by_hour.items()):
        start, end = max(bucket, run.start), min(bucket + BUCKET, run.end)
        for page in _hour_pages(client, sorted(device_ids), start, end):
            wanted = [r for r in page if (bucket, r.device_external_id) in missing]
            for r in wanted:
                distinct[(bucket, r.device_external_id)].add(
                    (r.timestamp, payload_digest(r.payload))
                )
            _ingest(run, wanted)
    return {key: len(found) for key, found in distinct.items()}


def _hour_pages(
    client: GoliothClient, device_ids: list[str], start: datetime, end: datetime
) -> Iterator[list[StreamReading]]:
    if len(device_ids) <= PER_DEVICE_LIMIT:
        for device_id in device_ids:
            yield from client.iter_device_stream_pages(device_id=device_id, start=start, end=end)
    else:
        yield from client.iter_stream_pages(start=start, end=end, device_ids=device_ids)


def _ingest(run: _Run, readings: list[StreamReading]) -> None:
    outcome = run.outcome
    outcome.fetched += len(readings)
    _report(run, readings)
    if not readings:
        return
    scope = run.scope
    if not scope.restricted:
        ensure_devices(run.integration, scope, {r.device_external_id for r in readings})
    batch = [
        Reading(scope.devices[r.device_external_id], r.device_external_id, r.timestamp, r.payload)
        for r in readings
        if r.device_external_id in scope.devices
    ]
    result: IngestResult = ingest_readings(
        batch,
        integration_id=run.integration.pk,
        source="reconcile",
        activity_id=run.claim.activity.pk if run.claim else None,
        time_tolerance=timedelta(seconds=run.settings.time_tolerance_seconds),
    )
    # Counted as committed, batch by batch: a failure later still reports what was stored.
    outcome.recovered += result.inserted + result.corrected
    outcome.duplicates += result.duplicates
    _renew(run)


def _report(run: _Run, readings: list[StreamReading]) -> None:
    run.pages = run.outcome.pages = run.pages + 1
    if run.progress is not None:
        elapsed = time.monotonic() - run.started
        run.progress(
            page_progress(
                readings, pages_done=run.pages, readings=run.outcome.fetched, elapsed=elapsed
            )
        )


def _fallback(run: _Run, client: GoliothClient, *, reason: str) -> None:
    """Golioth refused the count query: read the whole lookback again (dedup keeps it exact)."""
    run.outcome.fallback = reason[:300]
    if run.dry_run:
        return
    for page in client.iter_stream_pages(start=run.start, end=run.end):
        _ingest(run, page)


def _renew(run: _Run) -> None:
    """Between pages: keep the lease, and end the run if the qcluster is stopping (a reconcile
    stopped half-way is simply not verified; the next one checks again)."""
    if run.claim is not None:
        run.claim.lease.renew()
    shutdown.check()


# --- endings -------------------------------------------------------------------------------------


def _finish(run: _Run, client: GoliothClient | None, *, status: str) -> ReconcileOutcome:
    outcome = run.outcome
    outcome.status = status
    outcome.duration = time.monotonic() - run.started
    if client is not None:
        outcome.api_calls, outcome.retries = client.stats.calls, client.stats.retries
    claim = run.claim
    if claim is None:
        return outcome
    state: dict[str, object] = {"last_reconcile_at": timezone.now()}
    if status == Status.SUCCESS:
        verified = max(run.end, run.integration.verified_through or run.end)
        state["verified_through"] = outcome.verified_through = verified
    claim.lease.release(**state)
    ConsistentBucket.objects.filter(
        integration=run.integration, bucket_start__lt=timezone.now() - timedelta(days=400)
    ).delete()
    error = outcome.error
    if status == Status.PARTIAL:
        error = (
            f"{outcome.buckets_still_missing} device-hours still miss readings after the "
            "repair; the next reconcile tries again"
        )
    ActivityLog.objects.finish(
        claim.activity,
        status=status,
        message=outcome.describe(),
        error_message=error,
        devices_seen=outcome.devices,
        readings_fetched=outcome.fetched,
        readings_inserted=outcome.recovered,
        readings_duplicate=outcome.duplicates,
        api_calls=outcome.api_calls,
        retries=outcome.retries,
        metadata={**claim.activity.metadata, **_figures(outcome)},
    )
    return outcome


def _figures(outcome: ReconcileOutcome) -> dict[str, object]:
    figures: dict[str, object] = {
        name: getattr(outcome, name)
        for name in (
            "buckets_checked",
            "buckets_missing",
            "buckets_repaired",
            "buckets_consistent",
            "buckets_still_missing",
            "readings_missing",
            "surplus_buckets",
            "surplus_readings",
        )
    }
    figures["bucket"] = BUCKET_NAME
    if outcome.fallback:
        figures["fallback"] = outcome.fallback
    return figures


def _skip(integration: DeviceIntegration, reason: str, *, trigger: str) -> ReconcileOutcome:
    entry = ActivityLog.objects.log(
        integration,
        activity_type=ActivityLog.ActivityType.RECONCILE,
        status=Status.SKIPPED,
        trigger=trigger,
        message=f"Reconcile skipped: {reason}",
    )
    return ReconcileOutcome(integration.pk, Status.SKIPPED, activity=entry, skip_reason=reason)
