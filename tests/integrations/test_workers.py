"""Real `manage.py qcluster` processes sharing the PostgreSQL test database as their broker,
syncing from the Golioth simulator over real HTTP: the work splits between them, intervals hold,
an integration never runs twice at once, and a SIGKILLed worker's run is finished by the other.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from django_q.tasks import async_task

from integrations.golioth.simulator.server import GoliothSimulator
from integrations.models import ActivityLog, DeviceIntegration
from integrations.scheduling import DISPATCH_FUNC, enqueue_sync, ensure_schedules
from telemetry.keys import canonical_json
from telemetry.models import TelemetryRecord

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output" / "workers"
Activity = ActivityLog.ActivityType

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip(
            "needs PostgreSQL (DATABASE_URL=postgres://...): the worker processes must share the "
            "test database, and the SQLite test database is private to this test process"
        )


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def start_qcluster(request) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `manage.py qcluster` in its own process group (so a SIGKILL takes all of it)."""
    procs: list[subprocess.Popen] = []
    OUTPUT.mkdir(parents=True, exist_ok=True)

    def start(name: str, **env: str) -> subprocess.Popen:
        log = open(OUTPUT / f"{request.node.name}-{name}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "tests.settings",
                "DATABASE_URL": database_url(),
                "GSYNC_WORKERS": "1",
                **env,
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            # The main process only: it stops its workers. SIGTERM to the whole group kills
            # django-q2's sentinel under it and leaves the main process waiting for ever.
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    connection.close()


def wait_for(condition: Callable[[], bool], *, timeout: float, every: float = 0.5, tick=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if tick:
            tick()
        time.sleep(every)
    raise AssertionError(f"gave up after {timeout:.0f} s waiting for {condition.__doc__}")


def dispatch() -> None:
    # The schedule dispatches once a minute; the test asks more often so it need not wait for the
    # scheduler's 30 s cycle. Extra dispatches in the same minute must change nothing.
    async_task(DISPATCH_FUNC, task_name="test-dispatch")


def runs(integration: DeviceIntegration, *statuses: str) -> list[ActivityLog]:
    entries = ActivityLog.objects.filter(
        integration=integration, activity_type=Activity.SYNC_IMPORT
    ).order_by("started_at")
    return list(entries.filter(status__in=statuses) if statuses else entries)


def worker_group(run: ActivityLog) -> int:
    """Which qcluster ran it: the process group of the worker pid in the lease owner."""
    pid = int(run.metadata["lease"].split(":")[-2])
    return os.getpgid(pid)


def mirror(integration: DeviceIntegration) -> list[tuple]:
    rows = TelemetryRecord.objects.filter(integration=integration).select_related("device")
    return sorted(
        (r.device.external_id, r.device_timestamp, canonical_json(r.telemetry)) for r in rows
    )


def golioth_truth(sim: GoliothSimulator, *, end) -> list[tuple]:
    return sorted(
        (r.device_external_id, r.timestamp, canonical_json(r.payload))
        for r in sim.readings(end=end)
    )


def assert_never_overlapping(integration: DeviceIntegration) -> None:
    done = [r for r in runs(integration) if r.completed_at]
    for earlier, later in zip(done, done[1:], strict=False):
        assert later.started_at >= earlier.completed_at, f"{integration} ran twice at once"


# --- the tests -----------------------------------------------------------------------------------


def test_two_qclusters_split_integrations_and_honour_intervals(start_qcluster, make_integration):
    now = timezone.now()
    with GoliothSimulator(latency=0.2) as sim:
        sim.seed_fleet(4, 10, start=now - timedelta(hours=1), end=now - timedelta(minutes=1))
        common = {"api_key": sim.api_key, "base_url": sim.base_url}
        history = (now - timedelta(hours=2)).isoformat()
        fast = [
            make_integration(f"fast-{n}", settings={"syncIntervalSeconds": 60,
                                                    "backfillFrom": history}, **common)
            for n in range(4)
        ]  # fmt: skip
        slow = [
            make_integration(f"slow-{n}", settings={"syncIntervalSeconds": 300,
                                                    "backfillFrom": history}, **common)
            for n in range(2)
        ]  # fmt: skip
        paused = make_integration("paused", status="paused", **common)
        disabled = make_integration("disabled", settings={"syncEnabled": False}, **common)
        ensure_schedules()
        start_qcluster("a")
        start_qcluster("b")

        def each_fast_ran_twice():
            """every 60 s integration to finish its second run"""
            return all(len(runs(i, "success")) == 2 for i in fast)

        wait_for(each_fast_ran_twice, timeout=110, every=2, tick=dispatch)
        # A while longer, dispatching still: nothing more is due within this minute.
        for _ in range(5):
            dispatch()
            time.sleep(2)

        for integration in fast:
            assert len(runs(integration)) == 2
            assert_never_overlapping(integration)
        for integration in slow:
            assert len(runs(integration)) == 1
        assert runs(paused) == runs(disabled) == []
        all_runs = [r for i in fast + slow for r in runs(i)]
        assert len({worker_group(r) for r in all_runs}) == 2, "one qcluster did all the work"
        for integration in fast:
            last = runs(integration)[-1]
            assert mirror(integration) == golioth_truth(sim, end=last.window_end)


def slow_fleet(sim: GoliothSimulator, make_integration: Any, name: str) -> DeviceIntegration:
    """20 devices x 200 readings over two hours, pulled at 4 requests/s with 0.1 s per call:
    ~40 stream pages, slow enough to kill or stop a worker mid-run."""
    now = timezone.now()
    sim.seed_fleet(20, 200, start=now - timedelta(hours=2), end=now - timedelta(minutes=1))
    return make_integration(
        name,
        api_key=sim.api_key,
        base_url=sim.base_url,
        settings={
            "backfillFrom": (now - timedelta(hours=3)).isoformat(),
            "maxRequestsPerSecond": 4,
            # Else the dispatch right after the run queues the first reconcile, whose lease can
            # be held when the lease is checked (a race seen in CI).
            "reconcileIntervalMinutes": 0,
        },
    )


def test_sigkilled_worker_run_is_finished_by_the_other(start_qcluster, make_integration):
    with GoliothSimulator(latency=0.1) as sim:
        integration = slow_fleet(sim, make_integration, "big-fleet")
        ensure_schedules()
        lease = {"GSYNC_SYNC_LEASE_SECONDS": "4"}
        clusters = {start_qcluster("a", **lease).pid, start_qcluster("b", **lease).pid}

        # A burst of "Sync now" clicks, at once: one run is queued.
        clicks: list[bool] = []

        def click() -> None:
            clicks.append(enqueue_sync(integration))
            connection.close()

        threads = [threading.Thread(target=click) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(clicks) == [False, False, False, False, True]

        def first_run_is_storing():
            """the first run to store readings"""
            return TelemetryRecord.objects.filter(integration=integration).count() > 200

        wait_for(first_run_is_storing, timeout=60)
        assert enqueue_sync(integration) is False  # still running: clicks queue nothing
        (first,) = runs(integration)
        victim = worker_group(first)
        assert victim in clusters
        os.killpg(victim, signal.SIGKILL)
        integration.refresh_from_db()
        lease_expiry = integration.locked_until

        def a_run_succeeded():
            """the surviving qcluster to finish the integration"""
            return bool(runs(integration, "success"))

        wait_for(a_run_succeeded, timeout=90, every=1, tick=dispatch)
        first.refresh_from_db()
        assert first.status != "success"  # it died: left "started", or closed as failed later
        (second,) = runs(integration, "success")
        assert worker_group(second) in clusters - {victim}
        assert second.started_at >= lease_expiry  # the dead run's lease held until it expired
        integration.refresh_from_db()
        assert integration.locked_by == "" and integration.sync_cursor == second.window_end
        assert mirror(integration) == golioth_truth(sim, end=second.window_end)


def test_healthz_fails_when_the_scheduler_stops(start_qcluster, client, settings):
    settings.GSYNC_HEALTH_MAX_DISPATCH_AGE = 5
    ensure_schedules()
    cluster = start_qcluster("a")
    dispatch()

    def healthy():
        """/healthz to answer 200 once a worker has dispatched"""
        return client.get("/healthz").status_code == 200

    wait_for(healthy, timeout=30)
    cluster.terminate()
    cluster.wait(timeout=30)

    def failing():
        """/healthz to answer 503 once nothing dispatches any more"""
        return client.get("/healthz").status_code == 503

    wait_for(failing, timeout=30)
    assert "is a qcluster worker running?" in client.get("/healthz").json()["reason"]


def test_sigterm_stops_a_sync_between_pages_and_the_next_run_completes_it(
    start_qcluster, make_integration
):
    with GoliothSimulator(latency=0.1) as sim:
        integration = slow_fleet(sim, make_integration, "restarted")
        ensure_schedules()
        cluster = start_qcluster("a")
        assert enqueue_sync(integration)

        def first_run_is_storing():
            """the first run to store readings"""
            return TelemetryRecord.objects.filter(integration=integration).count() > 200

        wait_for(first_run_is_storing, timeout=60)
        cluster.send_signal(signal.SIGTERM)  # what systemd sends the main process on a restart
        assert cluster.wait(timeout=60) == 0  # a bound in case it hangs; the grace is 60 s

        (first,) = runs(integration)
        stored = TelemetryRecord.objects.filter(integration=integration).count()
        assert first.status == "failed" and first.completed_at is not None
        assert first.error_message.startswith("Interrupted by shutdown: the qcluster was stopped")
        assert first.metadata["interrupted"] == "shutdown"
        assert first.readings_inserted == stored  # what it stored is committed and counted
        assert 0 < stored < len(golioth_truth(sim, end=first.window_end))
        integration.refresh_from_db()
        assert integration.locked_by == "" and integration.locked_until is None  # lease freed
        assert integration.sync_cursor is None  # not moved past what it did not read
        assert integration.consecutive_failures == 0  # a restart is not a failure

        # After the restart the first dispatch queues the integration again at once.
        start_qcluster("b")

        def a_run_succeeded():
            """the restarted qcluster to finish the integration"""
            return bool(runs(integration, "success"))

        wait_for(a_run_succeeded, timeout=90, every=1, tick=dispatch)
        (second,) = runs(integration, "success")
        assert second.readings_duplicate == stored  # read again, stored once
        integration.refresh_from_db()
        assert integration.sync_cursor == second.window_end
        assert mirror(integration) == golioth_truth(sim, end=second.window_end)


def test_sigterm_kills_a_worker_still_busy_after_the_grace_period(start_qcluster, make_integration):
    # Every Golioth call takes 5 s, the grace 1 s: the run cannot reach a page boundary in time.
    with GoliothSimulator(latency=5) as sim:
        now = timezone.now()
        sim.seed_fleet(2, 10, start=now - timedelta(hours=1), end=now - timedelta(minutes=1))
        integration = make_integration(
            "stuck",
            api_key=sim.api_key,
            base_url=sim.base_url,
            settings={"reconcileIntervalMinutes": 0},
        )
        cluster = start_qcluster("a", GSYNC_SHUTDOWN_GRACE_SECONDS="1")
        assert enqueue_sync(integration)

        def run_started():
            """the run to start"""
            return bool(runs(integration))

        wait_for(run_started, timeout=60)
        cluster.send_signal(signal.SIGTERM)
        cluster.wait(timeout=30)  # without the grace period it would wait for the run

        (run,) = runs(integration)
        assert run.status == "started"  # killed, not finished: the lease then frees itself
        integration.refresh_from_db()
        assert integration.locked_by == run.metadata["lease"]
        log = OUTPUT / "test_sigterm_kills_a_worker_still_busy_after_the_grace_period-a.log"
        assert "still running after 1 s of grace; killing it" in log.read_text()
