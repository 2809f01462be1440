"""The soak's verdict: the mirror against the simulator's ground truth, figure by figure.

Every figure must be 0: readings Golioth holds that gsync lacks (missing), readings gsync holds
more than once or that Golioth never held (doubled, surplus), devices missing, extra or not as
Golioth describes them (devices wrong), webhook deliveries not stored (still queued, failed or
rejected: unprocessed), integration leases still held once everything stopped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count
from django.utils import timezone

from integrations.golioth.simulator.fleet import FleetModel, Key
from integrations.golioth.simulator.store import SimDevice
from integrations.models import DeviceIntegration, WebhookDelivery
from telemetry.keys import canonical_json
from telemetry.models import Device, TelemetryRecord

DONE = (WebhookDelivery.Outcome.PROCESSED, WebhookDelivery.Outcome.DUPLICATE)


@dataclass(frozen=True)
class Verdict:
    truth: int
    stored: int
    missing: int
    doubled: int
    surplus: int
    devices_wrong: int
    deliveries: int
    unprocessed: int
    leases_held: int

    @property
    def failures(self) -> dict[str, int]:
        return {
            "readings missing": self.missing,
            "readings doubled": self.doubled,
            "readings surplus": self.surplus,
            "devices wrong": self.devices_wrong,
            "deliveries unprocessed": self.unprocessed,
            "leases still held": self.leases_held,
        }

    @property
    def passed(self) -> bool:
        return not any(self.failures.values())

    def lines(self) -> list[str]:
        head = [
            f"ground truth readings     {self.truth:>8,}",
            f"mirror rows               {self.stored:>8,}",
            f"webhook deliveries        {self.deliveries:>8,}",
        ]
        return head + [f"{name:<26}{value:>8,}" for name, value in self.failures.items()]


def judge_fleet(integration: DeviceIntegration, fleet: FleetModel, *, until: datetime) -> Verdict:
    """The mirror against what the fleet's LightDB Stream holds up to `until`."""
    truth = Counter(k for k in fleet.ground_truth() if k[1] < until)
    return judge(integration, truth, fleet.simulator.devices)


def judge(integration: DeviceIntegration, truth: Counter[Key], devices: list[SimDevice]) -> Verdict:
    """The mirror of `integration` against `truth` (gsync's dedup keys of what Golioth holds)
    and Golioth's `devices`."""
    rows = TelemetryRecord.objects.filter(integration=integration).values_list(
        "device__external_id", "device_timestamp", "telemetry"
    )
    stored = Counter((d, t, canonical_json(p)) for d, t, p in rows)
    outcomes = dict(
        WebhookDelivery.objects.filter(integration=integration)
        .values_list("outcome")
        .annotate(n=Count("id"))
        .values_list("outcome", "n")
    )
    return Verdict(
        truth=sum(truth.values()),
        stored=sum(stored.values()),
        missing=len(truth.keys() - stored.keys()),
        doubled=sum(n - 1 for n in stored.values() if n > 1),
        surplus=len(stored.keys() - truth.keys()),
        devices_wrong=_devices_wrong(integration, devices),
        deliveries=sum(outcomes.values()),
        unprocessed=sum(n for outcome, n in outcomes.items() if outcome not in DONE),
        leases_held=DeviceIntegration.objects.filter(
            pk=integration.pk, locked_until__gt=timezone.now()
        ).count(),
    )


def _devices_wrong(integration: DeviceIntegration, devices: list[SimDevice]) -> int:
    golioth = {d.id: (d.name, list(d.hardware_ids)) for d in devices}
    mirror = {
        external_id: (name, list(hardware_ids))
        for external_id, name, hardware_ids in Device.objects.filter(
            integration=integration
        ).values_list("external_id", "name", "hardware_ids")
    }
    differing = sum(1 for key in golioth.keys() & mirror.keys() if golioth[key] != mirror[key])
    return len(golioth.keys() ^ mirror.keys()) + differing
