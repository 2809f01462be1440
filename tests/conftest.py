from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from integrations.models import DeviceIntegration
from telemetry.models import Device


@pytest.fixture
def make_integration(db) -> Callable[..., DeviceIntegration]:
    def make(name: str = "fleet", *, api_key: str = "sim-key", settings: dict | None = None,
             **fields: Any) -> DeviceIntegration:
        fields.setdefault("project_id", "sim-project")
        integration = DeviceIntegration(name=name, settings=settings or {}, **fields)
        integration.set_api_key(api_key)
        integration.save()
        return integration

    return make


@pytest.fixture
def integration(make_integration) -> DeviceIntegration:
    return make_integration()


@pytest.fixture
def make_device(db) -> Callable[..., Device]:
    def make(integration: DeviceIntegration, external_id: str = "d1", **fields: Any) -> Device:
        fields.setdefault("name", external_id.upper())
        return Device.objects.create(integration=integration, external_id=external_id, **fields)

    return make
