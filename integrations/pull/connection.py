"""Talking to an integration's Golioth: its client, the connection test, and error messages.

Part of the pull's API (integrations.pull.sync re-exports `make_client` and `test_connection`).

The connection test runs in the admin request that asked for it, so it is bounded instead of
queued: one attempt, no retries, TEST_TIMEOUT_SECONDS to connect and as long for the answer. A
queued test would need a running worker, and it is often the first thing staff try, before any
worker is known to run; three seconds in the page with a clear verdict beats a result to look
for later.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from integrations.crypto import DecryptionError, EncryptionKeyError
from integrations.golioth.client import GoliothClient
from integrations.golioth.errors import (
    AuthenticationError,
    GoliothError,
    UnavailableError,
    remote_text,
)
from integrations.models import ActivityLog, DeviceIntegration
from integrations.pull.lease import LeaseLostError
from integrations.shutdown import ShutdownRequestedError
from integrations.sync_settings import SettingsError

# Failures with a message written for staff; anything else is a bug and gets a traceback.
EXPECTED_ERRORS = (
    GoliothError,
    DecryptionError,
    EncryptionKeyError,
    LeaseLostError,
    SettingsError,
    ShutdownRequestedError,
)

Status = ActivityLog.Status
# The connection test's bound (connect, then read), with no retry: a page never waits for long.
TEST_TIMEOUT_SECONDS = 3.0


def make_client(
    integration: DeviceIntegration,
    *,
    timeout: float | None = None,
    max_retries: int | None = None,
) -> GoliothClient:
    """A client for `integration`: its base URL, key, project and request rate; timeouts and
    retries from settings (GSYNC_HTTP_*) unless given."""
    api_key = integration.get_api_key()
    if not api_key:
        raise AuthenticationError("no API key is set for this integration: add one in the admin")
    return GoliothClient(
        base_url=integration.base_url,
        api_key=api_key,
        project_id=integration.project_id,
        max_requests_per_second=integration.sync_settings.max_requests_per_second,
        timeout=settings.GSYNC_HTTP_TIMEOUT if timeout is None else timeout,
        max_retries=settings.GSYNC_HTTP_MAX_RETRIES if max_retries is None else max_retries,
        backoff_factor=settings.GSYNC_HTTP_BACKOFF,
    )


def test_connection(
    integration: DeviceIntegration, *, trigger: str = ActivityLog.Trigger.ADMIN
) -> ActivityLog:
    """GET the project: proves the base URL, the key and the project id; logs the answer.

    Bounded (TEST_TIMEOUT_SECONDS, one attempt): it runs while a page waits for it."""
    entry = {
        "activity_type": ActivityLog.ActivityType.TEST_CONNECTION,
        "direction": ActivityLog.Direction.OUTGOING,
        "trigger": trigger,
        "started_at": timezone.now(),
    }
    try:
        with make_client(integration, timeout=TEST_TIMEOUT_SECONDS, max_retries=0) as client:
            project = client.get_project()
    except (*EXPECTED_ERRORS, ValueError) as exc:
        error = describe_error(exc, integration=integration)
        if isinstance(exc, UnavailableError) and exc.status is None:
            error = f"{_unreachable(integration)}: {error}"
        return ActivityLog.objects.log(
            integration,
            **entry,
            status=Status.FAILED,
            message="Connection test failed",
            error_message=error,
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


def _unreachable(integration: DeviceIntegration) -> str:
    host = urlsplit(integration.base_url).netloc or integration.base_url
    return f"Could not reach {host} within {TEST_TIMEOUT_SECONDS:g} s"


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
