"""Talking to an integration's Golioth: its client, the connection test, and error messages.

Part of the pull's API (integrations.pull.sync re-exports `make_client` and `test_connection`).
"""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from integrations.crypto import DecryptionError, EncryptionKeyError
from integrations.golioth.client import GoliothClient
from integrations.golioth.errors import AuthenticationError, GoliothError, remote_text
from integrations.models import ActivityLog, DeviceIntegration
from integrations.pull.lease import LeaseLostError
from integrations.sync_settings import SettingsError

# Failures with a message written for staff; anything else is a bug and gets a traceback.
EXPECTED_ERRORS = (
    GoliothError,
    DecryptionError,
    EncryptionKeyError,
    LeaseLostError,
    SettingsError,
)

Status = ActivityLog.Status


def make_client(integration: DeviceIntegration) -> GoliothClient:
    """A client for `integration`: its base URL, key, project and request rate; timeouts and
    retries from settings (GSYNC_HTTP_*)."""
    api_key = integration.get_api_key()
    if not api_key:
        raise AuthenticationError("no API key is set for this integration: add one in the admin")
    return GoliothClient(
        base_url=integration.base_url,
        api_key=api_key,
        project_id=integration.project_id,
        max_requests_per_second=integration.sync_settings.max_requests_per_second,
        timeout=settings.GSYNC_HTTP_TIMEOUT,
        max_retries=settings.GSYNC_HTTP_MAX_RETRIES,
        backoff_factor=settings.GSYNC_HTTP_BACKOFF,
    )


def test_connection(
    integration: DeviceIntegration, *, trigger: str = ActivityLog.Trigger.ADMIN
) -> ActivityLog:
    """GET the project: proves the base URL, the key and the project id; logs the answer."""
    entry = {
        "activity_type": ActivityLog.ActivityType.TEST_CONNECTION,
        "direction": ActivityLog.Direction.OUTGOING,
        "trigger": trigger,
        "started_at": timezone.now(),
    }
    try:
        with make_client(integration) as client:
            project = client.get_project()
    except (*EXPECTED_ERRORS, ValueError) as exc:
        return ActivityLog.objects.log(
            integration,
            **entry,
            status=Status.FAILED,
            message="Connection test failed",
            error_message=describe_error(exc, integration=integration),
        )
    # The project's name is the one remote text staff see here: bounded and plain.
    name = remote_text(project.get("name"), limit=100) if isinstance(project, dict) else ""
    return ActivityLog.objects.log(
        integration,
        **entry,
        status=Status.SUCCESS,
        api_calls=1,
        message=f"Connected to project {integration.project_id}" + (f" ({name})" if name else ""),
    )


def describe_error(exc: Exception, *, integration: DeviceIntegration) -> str:
    """A message staff can act on, with the key scrubbed whatever the error echoes."""
    if isinstance(exc, EXPECTED_ERRORS):
        text = str(exc)
    else:
        text = f"unexpected error ({type(exc).__name__}): {exc}"
    try:
        key = integration.get_api_key()
    except (DecryptionError, EncryptionKeyError):
        key = ""
    if len(key) >= 4:
        text = text.replace(key, "[redacted]")
    return text[:2000]
