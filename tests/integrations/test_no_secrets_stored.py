"""After a full sync and a webhook exchange, no table and no log line holds a secret (issue 9).

Everything runs for real: the simulator over HTTP (with faults, so retries log), the webhook view
behind a live server (right and wrong secrets), runsync, Test connection, the admin's pages and
Sync now (a django-q2 task, queued and run). Then every table is read with a raw SELECT, the
signed or pickled columns decoded (sessions, django-q2's queue and results), and the captured
logs joined: neither the API key nor the webhook secret may appear in plain text.
"""

from __future__ import annotations

import io
import logging
from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ, Task
from django_q.signing import SignedPackage

from integrations.golioth.simulator.faults import FaultConfig
from integrations.golioth.simulator.server import GoliothSimulator
from integrations.models import DeviceIntegration, WebhookDelivery
from integrations.pull import sync
from integrations.pull.connection import test_connection as check_connection
from integrations.scheduling import enqueue_sync
from telemetry.models import TelemetryRecord

API_KEY = "leak-probe-API-KEY-8f2a9c41d7"
WEBHOOK_SECRET = "leak-probe-WEBHOOK-SECRET-71d3e0b5"
CHANGELIST = "/admin/integrations/deviceintegration/"


@pytest.fixture
def simulator():
    with GoliothSimulator(api_key=API_KEY, project_id="leak-project", seed=3) as sim:
        yield sim


def every_table_as_text() -> str:
    """Every row of every table, raw, plus what the signed and pickled columns hold."""
    parts = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                parts.append(f"{table}: " + " | ".join(map(_text, row)))
    parts += [repr(session.get_decoded()) for session in Session.objects.all()]
    parts += [repr(SignedPackage.loads(q.payload)) for q in OrmQ.objects.all()]
    parts += [repr((t.args, t.kwargs, t.result)) for t in Task.objects.all()]
    return "\n".join(parts)


def _text(value: object) -> str:
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("latin-1")
    return str(value)


@pytest.mark.django_db(transaction=True)
def test_no_secret_in_any_table_or_log(
    simulator, live_server, admin_client, caplog, monkeypatch, make_integration
):
    for name in (None, "django.db.backends", "django-q"):
        caplog.set_level(logging.DEBUG, logger=name)
    base_url = simulator.start()
    now = timezone.now()
    fleet = simulator.seed_fleet(
        3, 40, start=now - timedelta(minutes=50), end=now - timedelta(minutes=2)
    )
    integration = make_integration(
        "leak-fleet",
        api_key=API_KEY,
        base_url=base_url,
        project_id="leak-project",
        webhook_enabled=True,
        settings={
            "maxRequestsPerSecond": 1000,
            "backfillFrom": (now - timedelta(hours=1)).isoformat(),
        },
    )
    integration.add_webhook_secret(WEBHOOK_SECRET)
    integration.save()
    webhook_url = live_server.url + integration.webhook_path
    output = io.StringIO()

    with CaptureQueriesContext(connection):  # SQL and its parameters go to the DEBUG log too
        for n, device in enumerate(fleet):
            answer = simulator.send_webhook(
                webhook_url, device_id=device.id, data={"n": n},
                headers={"Authorization": WEBHOOK_SECRET},
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
        wrong = simulator.send_webhook(
            webhook_url, device_id=fleet[0].id, data={"n": -1}, store=False,
            headers={"Authorization": WEBHOOK_SECRET[:-1]},
        )  # fmt: skip
        assert wrong.status_code == 401
        simulator.faults = FaultConfig(rate=0.3, kinds=("500", "429", "truncate"), seed=5)
        call_command("runsync", "leak-fleet", "--force", stdout=output, stderr=output)
        simulator.faults = FaultConfig()
        assert check_connection(integration).status == "success"
        enqueue_sync(integration, trigger="admin")  # a queued task, left in the queue
        monkeypatch.setattr(Conf, "SYNC", True)
        admin_client.post(CHANGELIST, {"action": "sync_now", "_selected_action": [integration.pk]})
        for url in (CHANGELIST, f"{CHANGELIST}{integration.pk}/change/"):
            output.write(admin_client.get(url).content.decode())
        sync.sync_integration(integration, force=True, since=now - timedelta(hours=2))

    assert TelemetryRecord.objects.count() == len(simulator.store)
    assert WebhookDelivery.objects.filter(outcome="processed").count() == len(fleet)
    assert DeviceIntegration.objects.get().get_api_key() == API_KEY
    assert OrmQ.objects.exists() and Session.objects.exists()
    dump = every_table_as_text()
    logs = "\n".join(
        f"{record.name} {record.getMessage()} {record.exc_text or ''}" for record in caplog.records
    )
    assert "device_integrations" in dump and "webhook_deliveries" in dump
    assert "SELECT" in logs  # the SQL log was captured
    for secret in (API_KEY, WEBHOOK_SECRET):
        assert secret not in dump
        assert secret not in logs
        assert secret not in output.getvalue()
