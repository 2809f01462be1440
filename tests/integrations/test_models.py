from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from integrations import crypto
from integrations.models import DeviceIntegration
from telemetry.models import TelemetryRecord

API_KEY = "golioth-plaintext-key-4242"

OPERATORS_QUERY = (
    "SELECT name, status, settings->>'syncEnabled' AS sync_enabled, "
    "settings->>'syncIntervalSeconds' AS interval, last_sync_at FROM device_integrations "
    "WHERE integration_type = 'golioth';"
)


def raw_key_column(integration: DeviceIntegration) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT api_key_encrypted, api_key_hint FROM device_integrations WHERE id = %s",
            [integration.pk],
        )
        return " ".join(cursor.fetchone())


def test_api_key_row_never_holds_the_plaintext(make_integration):
    integration = make_integration(api_key=API_KEY)

    stored = raw_key_column(integration)

    assert API_KEY not in stored
    assert API_KEY[:-4] not in stored
    assert DeviceIntegration.objects.get().get_api_key() == API_KEY
    assert integration.api_key_display == "••••4242"


def test_api_key_decrypts_after_key_rotation(make_integration, settings):
    old_key = settings.GSYNC_ENCRYPTION_KEYS[0]
    integration = make_integration(api_key=API_KEY)
    new_key = Fernet.generate_key().decode()

    settings.GSYNC_ENCRYPTION_KEYS = [new_key, old_key]

    assert DeviceIntegration.objects.get(pk=integration.pk).get_api_key() == API_KEY
    integration.set_api_key("second-key-1111")
    integration.save()
    settings.GSYNC_ENCRYPTION_KEYS = [new_key]
    assert DeviceIntegration.objects.get(pk=integration.pk).get_api_key() == "second-key-1111"


def test_api_key_from_a_dropped_key_is_a_clear_error(make_integration, settings):
    integration = make_integration(api_key=API_KEY)
    settings.GSYNC_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(crypto.DecryptionError, match="cannot be decrypted"):
        DeviceIntegration.objects.get(pk=integration.pk).get_api_key()


def test_webhook_secret_stored_as_hash_only(make_integration):
    integration = make_integration()
    secret = integration.add_webhook_secret()
    integration.save()

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT webhook_secrets FROM device_integrations WHERE id = %s", [integration.pk]
        )
        stored = str(cursor.fetchone()[0])

    assert secret not in stored
    assert DeviceIntegration.objects.get().check_webhook_secret(secret)


def test_integration_name_is_unique(make_integration):
    make_integration("fleet")

    with pytest.raises(IntegrityError), transaction.atomic():
        make_integration("fleet")


def test_device_external_id_unique_per_integration(make_integration, make_device):
    one, two = make_integration("one"), make_integration("two")
    make_device(one, "d1")
    make_device(two, "d1")  # the same Golioth id in another integration is another device

    with pytest.raises(IntegrityError), transaction.atomic():
        make_device(one, "d1")


def test_telemetry_dedup_key_is_unique(integration, make_device):
    device = make_device(integration)
    key = uuid.uuid4()
    fields = {
        "device": device,
        "integration": integration,
        "telemetry": {"t": 1},
        "device_timestamp": datetime(2026, 3, 1, tzinfo=UTC),
        "source": "sync",
    }
    TelemetryRecord.objects.create(dedup_key=key, **fields)

    with pytest.raises(IntegrityError), transaction.atomic():
        TelemetryRecord.objects.create(dedup_key=key, **fields)


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the operators' query uses PostgreSQL's ->>"
)
def test_operators_query_runs_verbatim_on_postgresql(make_integration, monkeypatch):
    monkeypatch.setenv("GOLIOTH_API_KEY", API_KEY)
    call_command(
        "integration",
        "create",
        "berlin",
        "--project-id",
        "p",
        "--sync-interval-seconds",
        "600",
        stdout=io.StringIO(),
    )
    call_command(
        "integration",
        "create",
        "quiet",
        "--project-id",
        "p",
        "--no-sync-enabled",
        stdout=io.StringIO(),
    )
    synced_at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    DeviceIntegration.objects.filter(name="berlin").update(last_sync_at=synced_at)

    with connection.cursor() as cursor:
        cursor.execute(OPERATORS_QUERY)
        rows = sorted(cursor.fetchall())

    assert rows == [
        ("berlin", "active", "true", "600", synced_at),
        ("quiet", "active", "false", "300", None),
    ]
