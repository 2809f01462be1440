from __future__ import annotations

import random
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.conf import Conf

from integrations.demo import DEMO_NAME, add_live_readings, start_demo
from integrations.models import ActivityLog, DeviceIntegration
from integrations.scheduling import dispatch_due_integrations
from telemetry.models import Device, TelemetryRecord


@pytest.fixture
def demo():
    demo = start_demo(
        port=0, devices=4, readings_per_device=5, history=timedelta(hours=1), now=timezone.now()
    )
    yield demo
    demo.simulator.stop()


@pytest.mark.django_db
def test_demo_command_points_integration_at_simulator_and_pauses_on_exit():
    out = StringIO()
    call_command("demo", "--port", "0", "--devices", "3", "--stop-after", "0.1", stdout=out)
    integration = DeviceIntegration.objects.get(name=DEMO_NAME)
    assert integration.base_url.startswith("http://127.0.0.1:")
    assert integration.sync_settings.sync_interval_seconds == 60
    assert integration.webhook_enabled and len(integration.webhook_secrets) == 1
    assert integration.status == DeviceIntegration.Status.PAUSED
    assert "3 devices" in out.getvalue() and "paused" in out.getvalue()
    assert integration.get_api_key() not in out.getvalue()


@pytest.mark.django_db
def test_demo_restart_updates_the_one_integration():
    for _ in range(2):
        call_command(
            "demo", "--port", "0", "--devices", "2", "--stop-after", "0", stdout=StringIO()
        )
    integration = DeviceIntegration.objects.get(name=DEMO_NAME)
    assert len(integration.webhook_secrets) == 1


@pytest.mark.django_db
def test_demo_fleet_flows_in_at_the_first_dispatch(demo, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", True)
    add_live_readings(demo, rng=random.Random(1), seq=99)  # webhooks unreachable: pull only
    assert dispatch_due_integrations() == [demo.integration.pk]
    assert Device.objects.filter(integration=demo.integration).count() == 4
    run = ActivityLog.objects.get(activity_type="sync_import")
    assert run.status == "success"
    # Everything up to the run's closed window (now minus settleSeconds); the rest comes next run.
    expected = demo.simulator.readings(end=run.window_end)
    assert TelemetryRecord.objects.count() == len(expected) == 20


@pytest.mark.django_db
def test_demo_command_warns_when_the_settings_refuse_the_simulator(settings):
    settings.GSYNC_API_HOSTS = ["api.golioth.io"]
    settings.GSYNC_ALLOW_PRIVATE_API_HOSTS = False
    err = StringIO()
    call_command(
        "demo", "--port", "0", "--devices", "1", "--stop-after", "0", stdout=StringIO(), stderr=err
    )
    assert "GSYNC_DEMO=1" in err.getvalue() and "not an allowed Golioth API host" in err.getvalue()
