"""One sync run per integration at a time: the lease, concurrent runs, a dead worker's lease."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from integrations.models import ActivityLog, DeviceIntegration
from integrations.pull import sync
from integrations.pull.lease import Lease, LeaseLostError
from integrations.pull.sync import sync_integration
from telemetry.models import TelemetryRecord

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def seeded(golioth, golioth_integration):
    golioth.seed_fleet(30, 10, start=NOW - timedelta(hours=1), end=NOW - timedelta(minutes=5))
    golioth_integration.settings = {
        "maxRequestsPerSecond": 1000,
        "backfillFrom": (NOW - timedelta(hours=2)).isoformat(),
    }
    golioth_integration.save()
    return golioth_integration


def run_together(integration_id: int, runs: int) -> list:
    """Start `runs` syncs of one integration at the same moment, each on its own connection."""
    barrier = threading.Barrier(runs)
    outcomes: list = []

    def run() -> None:
        try:
            barrier.wait()
            outcomes.append(sync_integration(integration_id, now=NOW))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("runs", [2, 4])
def test_sync_runs_started_together_one_syncs_the_others_skip(golioth, seeded, runs):
    golioth.latency = 0.05  # a run lasts longer than it takes the others to start

    outcomes = run_together(seeded.pk, runs)

    statuses = sorted(o.status for o in outcomes)
    assert statuses == ["skipped"] * (runs - 1) + ["success"]
    assert {o.skip_reason for o in outcomes if o.status == "skipped"} == {"already running"}
    assert TelemetryRecord.objects.count() == len(golioth.readings()) == 290
    skipped = ActivityLog.objects.filter(activity_type="sync_skipped")
    assert [e.message for e in skipped] == ["Sync skipped: already running"]


def test_sync_skips_while_another_worker_holds_the_lease(golioth, seeded):
    DeviceIntegration.objects.filter(pk=seeded.pk).update(
        locked_until=timezone.now() + timedelta(minutes=4), locked_by="other-host:42:abcd1234"
    )

    outcome = sync_integration(seeded, now=NOW)

    assert (outcome.status, outcome.skip_reason) == ("skipped", "already running")
    assert golioth.calls == 0
    seeded.refresh_from_db()
    assert seeded.locked_by == "other-host:42:abcd1234"


def test_sync_takes_over_the_expired_lease_of_a_dead_worker(golioth, seeded):
    DeviceIntegration.objects.filter(pk=seeded.pk).update(
        locked_until=timezone.now() - timedelta(seconds=1), locked_by="dead-host:42:abcd1234"
    )

    outcome = sync_integration(seeded, now=NOW)

    assert outcome.status == "success"
    assert TelemetryRecord.objects.count() == 290
    seeded.refresh_from_db()
    assert (seeded.locked_by, seeded.locked_until) == ("", None)


def test_sync_killed_mid_run_keeps_whole_batches_and_converges(
    golioth, golioth_integration, monkeypatch
):
    monkeypatch.setattr(sync, "INGEST_BATCH_SIZE", 500)
    monkeypatch.setattr(sync, "FLUSH_SECONDS", 3600)  # batches by size only, however slow
    golioth.seed_fleet(
        100, 12, start=NOW - timedelta(hours=1), end=NOW - timedelta(minutes=5), never_connected=0
    )
    golioth_integration.settings = {"maxRequestsPerSecond": 1000}
    golioth_integration.save()
    since = NOW - timedelta(hours=2)

    def die(progress) -> None:
        if progress.pages_done == 8:  # one batch of 5 pages committed, the next one under way
            raise KeyboardInterrupt  # the worker is killed: no cleanup runs

    with pytest.raises(KeyboardInterrupt):
        sync_integration(golioth_integration, now=NOW, since=since, progress=die)
    stored = TelemetryRecord.objects.count()
    assert stored == 500  # the whole batches only
    DeviceIntegration.objects.filter(pk=golioth_integration.pk).update(
        locked_until=timezone.now() - timedelta(seconds=1)
    )  # its lease has run out

    outcome = sync_integration(golioth_integration, now=NOW, since=since)

    assert (outcome.status, outcome.inserted, outcome.duplicates) == (
        "success",
        1200 - stored,
        stored,
    )
    assert TelemetryRecord.objects.count() == 1200
    dead, finished = ActivityLog.objects.order_by("id")
    assert (dead.status, finished.status) == ("failed", "success")
    assert dead.error_message.startswith("This run stopped without finishing")


def test_lease_renewal_keeps_it_and_notices_a_takeover(integration):
    lease = Lease(integration.pk, seconds=60)
    assert lease.acquire()
    assert not Lease(integration.pk).acquire()

    lease.renew(force=True)
    integration.refresh_from_db()
    assert integration.locked_until > timezone.now() + timedelta(seconds=55)

    DeviceIntegration.objects.filter(pk=integration.pk).update(locked_by="someone-else")
    with pytest.raises(LeaseLostError):
        lease.renew(force=True)
    assert lease.release() is False
