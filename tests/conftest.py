from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django_q.conf import Conf

from integrations.golioth.simulator.server import GoliothSimulator
from integrations.models import DeviceIntegration
from telemetry.models import Device


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Each test starts with no failed webhook authentications counted (the cache is in memory,
    shared by every test of the process)."""
    cache.clear()
    yield


@pytest.fixture
def make_integration(db) -> Callable[..., DeviceIntegration]:
    def make(
        name: str = "fleet",
        *,
        api_key: str = "sim-key",
        settings: dict | None = None,
        **fields: Any,
    ) -> DeviceIntegration:
        fields.setdefault("project_id", "sim-project")
        settings = dict(settings or {})
        # The push tests check the synchronous answer (stored, duplicates) unless they ask for
        # the queued one (tests/integrations/push/test_webhook_queue.py).
        if fields.get("webhook_enabled"):
            settings.setdefault("webhookQueued", False)
        integration = DeviceIntegration(name=name, settings=settings, **fields)
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


@pytest.fixture
def golioth() -> Iterator[GoliothSimulator]:
    """A local Golioth over real HTTP (no latency, no faults); seed it, then sync against it."""
    with GoliothSimulator() as simulator:
        yield simulator


@pytest.fixture
def golioth_integration(make_integration, golioth) -> DeviceIntegration:
    """An integration pointing at the `golioth` simulator: its base URL, project and key.

    Its request rate is the highest allowed, so tests are not paced like a real Golioth project;
    keep `maxRequestsPerSecond` when replacing its settings.
    """
    return make_integration(
        "sim-fleet",
        api_key=golioth.api_key,
        base_url=golioth.base_url,
        project_id=golioth.project_id,
        settings={"maxRequestsPerSecond": 1000},
    )


@pytest.fixture
def run_tasks_inline(monkeypatch):
    """django-q2's sync mode: a queued task runs at once in this process (STYLE.md "Tests")."""
    monkeypatch.setattr(Conf, "SYNC", True)
