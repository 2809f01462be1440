from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from integrations.models import Heartbeat
from integrations.scheduling import DISPATCH_BEAT, dispatch_due_integrations


@pytest.mark.django_db
def test_healthz_ok_when_scheduler_dispatched_recently(client):
    dispatch_due_integrations()
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["last_dispatch_age_seconds"] <= 5


@pytest.mark.django_db
def test_healthz_503_when_scheduler_stopped(client, settings):
    settings.GSYNC_HEALTH_MAX_DISPATCH_AGE = 300
    Heartbeat.objects.create(name=DISPATCH_BEAT, beat_at=timezone.now() - timedelta(minutes=6))
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing"
    assert "last dispatched 360 s ago" in body["reason"]
    assert "qcluster" in body["reason"]


@pytest.mark.django_db
def test_healthz_503_when_never_dispatched(client):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert "never dispatched" in response.json()["reason"]


@pytest.mark.django_db
def test_healthz_needs_no_login_and_shows_no_secrets(client, make_integration):
    make_integration(api_key="golioth-key-very-secret-1234")
    dispatch_due_integrations()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert b"secret" not in response.content
    assert b"1234" not in response.content
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.django_db
def test_healthz_refuses_post(client):
    assert client.post("/healthz").status_code == 405
