"""Links from an admin action's message to the activity entry it wrote (issue 12).

An action that ran in the request (Test connection, Pause, re-processing) has its entry at hand.
A queued one (Sync now, Backfill, Verify completeness) has an entry only once a worker starts it:
if it is there already (a fast worker, or tasks run inline), the message links to it; if not, to
the activity log filtered to the integration, and says why. Everything goes through format_html:
integration names are staff input.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from integrations.models import ActivityLog, DeviceIntegration


def entry_url(entry: ActivityLog) -> str:
    return reverse("admin:integrations_activitylog_change", args=[entry.pk])


def entry_link(entry: ActivityLog) -> SafeString:
    return format_html('<a href="{}">activity entry #{}</a>', entry_url(entry), entry.pk)


def activity_log_url(integration: DeviceIntegration) -> str:
    query = urlencode({"integration__id__exact": integration.pk})
    return f"{reverse('admin:integrations_activitylog_changelist')}?{query}"


def queued_entry_link(
    integration: DeviceIntegration, *, activity_types: Iterable[str], since: datetime
) -> SafeString:
    """A sentence linking to the entry a run queued at `since` wrote, or to where it will be."""
    entry = (
        ActivityLog.objects.filter(
            integration=integration,
            activity_type__in=list(activity_types),
            started_at__gte=since,
        )
        .order_by("-started_at", "-pk")
        .first()
    )
    if entry is not None:
        return format_html("Result: {}.", entry_link(entry))
    return format_html(
        'Its entry appears when a worker starts the run: see <a href="{}">the activity log '
        "of “{}”</a>.",
        activity_log_url(integration),
        integration,
    )
