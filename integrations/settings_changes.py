"""What changed when staff saved an integration: one `settings_changed` activity entry per save.

Called by the admin and `manage.py integration` after a save, never from `save()` or a signal.
Secrets (the API key, webhook secrets) are compared but only ever named, never logged.
"""

from __future__ import annotations

from typing import Any

from integrations.models import ActivityLog, DeviceIntegration
from integrations.sync_settings import SettingsError, SyncSettings

# Compared to notice a change; their values never leave this module.
SECRET_KEYS = ("api_key", "webhook_secrets")
COLUMNS = ("name", "status", "project_id", "base_url", "webhook_enabled")


def snapshot(integration: DeviceIntegration) -> dict[str, Any]:
    """The staff-editable state of `integration`: its columns, then each settings key."""
    state: dict[str, Any] = {column: getattr(integration, column) for column in COLUMNS}
    state["api_key"] = integration.api_key_encrypted
    state["webhook_secrets"] = sorted(secret["id"] for secret in integration.webhook_secrets)
    state.update(_normalized(integration.settings))
    return state


def _normalized(settings: dict[str, Any] | None) -> dict[str, Any]:
    """With the defaults filled in, so saving `{}` as its defaults changes nothing."""
    try:
        return SyncSettings.from_json(settings).to_json()
    except SettingsError:
        return dict(settings or {})


def changed_keys(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    keys = list(dict.fromkeys([*before, *after]))
    return [key for key in keys if before.get(key) != after.get(key)]


def log_settings_change(
    integration: DeviceIntegration, *, before: dict[str, Any] | None, trigger: str
) -> ActivityLog | None:
    """Write the entry naming what changed (None when nothing did); `before` None: created."""
    after = snapshot(integration)
    changed = changed_keys(before or {}, after)
    if before is not None and not changed:
        return None
    values = {
        key: {"from": (before or {}).get(key), "to": after.get(key)}
        for key in changed
        if key not in SECRET_KEYS
    }
    if before is None:
        message = "Integration created."
    else:
        message = f"Changed: {', '.join(changed)}."
    return ActivityLog.objects.log(
        integration,
        activity_type=ActivityLog.ActivityType.SETTINGS_CHANGED,
        status=ActivityLog.Status.SUCCESS,
        trigger=trigger,
        message=message,
        metadata={"changed": changed, "values": values},
    )
