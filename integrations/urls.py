from __future__ import annotations

from django.urls import path

from integrations import health
from integrations.push import view as webhooks

urlpatterns = [
    path("webhooks/golioth/<str:token>/", webhooks.golioth_webhook, name="golioth-webhook"),
    path("healthz", health.healthz, name="healthz"),
]
