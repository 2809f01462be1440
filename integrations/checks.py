"""System checks: the mistakes that would otherwise surface as a lost reading or a failed save.

The database check runs where Django runs database checks (`migrate`, `check --database default`),
never at import time or before the tables exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DatabaseError

from integrations.crypto import KEY_HINT, key_problems


@register(Tags.security)
def check_encryption_key(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """An error, not a warning: without a usable key no integration can be saved or synced."""
    return [
        Error(problem, hint=KEY_HINT, id="gsync.E002" if "not set" in problem else "gsync.E003")
        for problem in key_problems()
    ]


@register(Tags.security, Tags.database)
def check_webhook_secrets(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> Sequence[CheckMessage]:
    """Webhooks enabled with no secret accept nothing: every delivery is answered 401."""
    if not databases or "default" not in databases:
        return []
    from integrations.models import DeviceIntegration

    try:
        enabled = DeviceIntegration.objects.filter(webhook_enabled=True)
        names = [i.name for i in enabled.only("name", "webhook_secrets") if not i.webhook_secrets]
    except DatabaseError:
        # Not migrated yet: nothing to check.
        return []
    return [
        Warning(
            f"Integration {name!r} has webhooks enabled but no webhook secret: every delivery "
            "is refused (401).",
            hint="Add a secret on the integration's admin page and store it in Golioth "
            "as the pipeline secret GSYNC_WEBHOOK_TOKEN.",
            obj=name,
            id="gsync.W001",
        )
        for name in names
    ]


@register(Tags.database)
def check_stream_retention(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> Sequence[CheckMessage]:
    """A window past Golioth's LightDB Stream retention finds nothing: say so per integration."""
    if not databases or "default" not in databases:
        return []
    from django.utils import timezone

    from integrations.models import DeviceIntegration
    from integrations.pull.retention import retention_warnings

    now = timezone.now()
    try:
        integrations = list(DeviceIntegration.objects.order_by("name"))
    except DatabaseError:
        return []  # not migrated yet
    return [
        Warning(
            f"Integration {integration.name!r}: {warning}",
            hint="Run a sync now, lower reconcileLookbackHours or backfillFrom, or set "
            "GSYNC_STREAM_RETENTION_DAYS to what your Golioth plan keeps.",
            obj=integration.name,
            id="gsync.W010",
        )
        for integration in integrations
        for warning in retention_warnings(integration, now=now)
    ]
