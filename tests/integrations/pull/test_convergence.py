"""Issue 8's long test: a moving fleet, a pull every cycle, a reconcile every few, and at the end
the mirror is Golioth's ground truth exactly.

The fleet (integrations.golioth.simulator.fleet) keeps a tenth of its devices offline at any
moment; they come back and upload back-dated batches, many older than the pull's overlap, some
while a run is paging. The pull alone cannot see those; the reconciles must bring them in.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from integrations.golioth.simulator.fleet import FleetModel
from integrations.golioth.simulator.pipelines import pipelines_from_yaml
from integrations.models import DeviceIntegration
from integrations.pull.reconcile import reconcile_integration
from integrations.pull.sync import sync_integration
from integrations.push.pipeline import pipeline_yaml
from telemetry.keys import canonical_json
from telemetry.models import TelemetryRecord

START = datetime(2026, 3, 2, tzinfo=UTC)
CYCLE = timedelta(minutes=15)
CYCLES = 40  # 10 hours of fleet time
RECONCILE_EVERY = 4  # cycles: hourly, the default reconcile interval


def mirror(integration: DeviceIntegration, until: datetime) -> Counter:
    rows = TelemetryRecord.objects.filter(
        integration=integration, device_timestamp__lt=until
    ).values_list("device__external_id", "device_timestamp", "telemetry")
    return Counter((d, t, canonical_json(p)) for d, t, p in rows)


def test_mirror_converges_to_the_ground_truth_of_a_moving_fleet(golioth, golioth_integration):
    golioth_integration.settings = {
        "maxRequestsPerSecond": 1000,
        "backfillFrom": START.isoformat(),
        "mirroredPaths": ["/sensor"],
    }
    golioth_integration.save()
    # The pipelines the integration page gives operators, with its buffered-upload steps.
    pipelines = pipelines_from_yaml(pipeline_yaml(golioth_integration))
    fleet = FleetModel(golioth, pipelines=pipelines, start=START, devices=40)
    reconciles = []

    for cycle in range(1, CYCLES + 1):
        fleet.advance(START + cycle * CYCLE)
        if cycle % 3 == 0:  # devices come back while the run pages their window
            fleet.reconnect_during_run(2, after_stream_calls=1)
        outcome = sync_integration(golioth_integration, now=fleet.now)
        assert outcome.status == "success", outcome.error
        if cycle % RECONCILE_EVERY == 0:
            reconciles.append(reconcile_integration(golioth_integration, now=fleet.now))
            assert reconciles[-1].status == "success", reconciles[-1].error

    # The faults stop: one clean cycle and one reconcile, as after a soak.
    assert sync_integration(golioth_integration, now=fleet.now).status == "success"
    final = reconcile_integration(golioth_integration, now=fleet.now)
    assert final.status == "success", final.error

    # The fleet did what real fleets do: back-dated batches beyond the overlap, uploads mid-run.
    overlap = timedelta(seconds=300)
    assert sum(u.at - u.oldest > overlap + CYCLE for u in fleet.uploads) >= 10
    assert sum(r.recovered for r in reconciles) > 0, "the pull alone caught every upload"
    # Every reading Golioth holds up to what the last reconcile verified, once; nothing else.
    through = final.window_end
    truth = Counter(k for k in fleet.ground_truth() if k[1] < through)
    stored = mirror(golioth_integration, through)
    assert len(truth) > 1_000
    assert sorted(truth - stored) == [], "missing"
    assert sorted(stored - truth) == [], "doubled or invented"
    assert max(stored.values()) == 1
    golioth_integration.refresh_from_db()
    assert golioth_integration.verified_through == through
