"""The demo: a local Golioth with a small fleet, and a "Demo fleet" integration pointing at it.

`manage.py demo --live` (started by `GSYNC_DEMO=1 make run`) lets a newcomer watch devices and
readings flow into the admin with no Golioth account: the worker pulls the simulator every minute,
and half the fleet also pushes each new reading to the webhook, as a Golioth pipeline would.
"""

from __future__ import annotations

import logging
import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests
from django.db import transaction
from django.utils import timezone

from integrations.golioth.simulator.server import GoliothSimulator
from integrations.golioth.simulator.store import SimDevice
from integrations.models import ActivityLog, DeviceIntegration
from integrations.sync_settings import SyncSettings

logger = logging.getLogger(__name__)

DEMO_NAME = "Demo fleet"
DEMO_PROJECT = "demo-project"
DEMO_INTERVAL_SECONDS = 60


@dataclass
class Demo:
    simulator: GoliothSimulator
    fleet: list[SimDevice]
    integration: DeviceIntegration
    webhook_secret: str


def start_demo(
    *, port: int, devices: int, readings_per_device: int, history: timedelta, now: datetime
) -> Demo:
    """Seed and start the simulator, then point the demo integration at it (a fresh API key and
    webhook secret each start, since the simulator forgets them)."""
    simulator = GoliothSimulator(project_id=DEMO_PROJECT, api_key=secrets.token_urlsafe(18))
    fleet = simulator.seed_fleet(devices, readings_per_device, start=now - history, end=now)
    base_url = simulator.start(port=port)
    integration, secret = upsert_demo_integration(
        base_url=base_url, api_key=simulator.api_key, history_start=now - history
    )
    return Demo(simulator=simulator, fleet=fleet, integration=integration, webhook_secret=secret)


def upsert_demo_integration(
    *, base_url: str, api_key: str, history_start: datetime
) -> tuple[DeviceIntegration, str]:
    """Create or update "Demo fleet": 60 s pulls from `history_start`, webhooks on; returns it
    and its one webhook secret."""
    settings = SyncSettings(
        sync_interval_seconds=DEMO_INTERVAL_SECONDS, backfill_from=history_start
    )
    with transaction.atomic():
        integration = DeviceIntegration.objects.select_for_update().filter(
            name=DEMO_NAME
        ).first() or DeviceIntegration(name=DEMO_NAME)
        integration.base_url = base_url
        integration.project_id = DEMO_PROJECT
        integration.set_api_key(api_key)
        integration.sync_settings = settings
        integration.status = DeviceIntegration.Status.ACTIVE
        integration.webhook_enabled = True
        integration.remove_webhook_secrets([s["id"] for s in integration.webhook_secrets])
        secret = integration.add_webhook_secret()
        # A new simulator holds new history: read it from the start again, at the next dispatch.
        integration.sync_cursor = None
        integration.last_queued_at = None
        integration.consecutive_failures = 0
        integration.sync_error = ""
        integration.save()
    return integration, secret


def add_live_readings(demo: Demo, *, rng: random.Random, seq: int) -> int:
    """One reading per connected device, "now". Even devices also push it to the webhook (as a
    pipeline would); odd ones reach gsync only by the pull. Returns how many were pushed."""
    pushed = 0
    connected = [d for d in demo.fleet if d.last_report is not None]
    for n, device in enumerate(connected):
        data = {"temp": round(rng.gauss(21.5, 2.0), 2), "hum": round(rng.uniform(35, 55), 1),
                "seq": seq}  # fmt: skip
        if n % 2:
            demo.simulator.add_reading(device.id, timezone.now(), data)
            continue
        pushed += _push(demo, device, data)
    return pushed


def _push(demo: Demo, device: SimDevice, data: dict) -> int:
    try:
        response = demo.simulator.send_webhook(
            demo.integration.webhook_url,
            device_id=device.id,
            data=data,
            shape="inject-metadata",
            headers={"Authorization": demo.webhook_secret},
            timeout=5.0,
        )
    except requests.RequestException as exc:
        # The web server may still be starting; the reading is in the stream, the pull gets it.
        logger.warning("demo: webhook not delivered (%s); the pull will fetch it", exc)
        return 0
    if response.status_code != 200:
        logger.warning("demo: webhook answered %s: %s", response.status_code, response.text[:200])
        return 0
    return 1


def pause_demo(integration: DeviceIntegration) -> None:
    """The simulator is gone: pause the integration rather than let it fail every minute."""
    DeviceIntegration.objects.filter(pk=integration.pk).update(
        status=DeviceIntegration.Status.PAUSED
    )
    ActivityLog.objects.log(
        integration,
        activity_type=ActivityLog.ActivityType.STATUS_CHANGED,
        status=ActivityLog.Status.SUCCESS,
        trigger=ActivityLog.Trigger.MANUAL,
        message="Paused: the demo simulator stopped (`manage.py demo` resumes it).",
    )
