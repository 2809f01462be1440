"""Coloured badges for the integration pages and the dashboard: one word (or a short age) in a
colour, the full text on hover. Inline styles, so a page needs no stylesheet of its own."""

from __future__ import annotations

from django.utils.html import format_html
from django.utils.safestring import SafeString

# One colour per state the pages name: health states (integrations.admin.dashboard.HealthState),
# lag judgements (integrations.admin.lag) and run statuses (ActivityLog.Status).
COLOURS = {
    "ok": "#2e7d32",
    "success": "#2e7d32",
    "running": "#1565c0",
    "started": "#1565c0",
    "late": "#e65100",
    "behind": "#e65100",
    "failing": "#c62828",
    "failed": "#c62828",
    "paused": "#616161",
    "skipped": "#616161",
    "no pull": "#616161",
    "outside window": "#6d4c41",
    "warning": "#b26a00",
    "partial": "#b26a00",
    # Webhook delivery outcomes (WebhookDelivery.Outcome) and HTTP status classes.
    "processed": "#2e7d32",
    "queued": "#1565c0",
    "received": "#1565c0",
    "duplicate": "#616161",
    "ignored": "#616161",
    "rejected": "#e65100",
    "2xx": "#2e7d32",
    "4xx": "#e65100",
    "5xx": "#c62828",
}
NEUTRAL = "#757575"


def badge(text: str, state: str, *, title: str = "") -> SafeString:
    return format_html(
        '<span class="gsync-badge" title="{}" style="background: {}; color: #fff; '
        'padding: 1px 6px; border-radius: 8px; white-space: nowrap;">{}</span>',
        title or text,
        COLOURS.get(state, NEUTRAL),
        text,
    )


def truncated(text: str, *, chars: int, title: str = "") -> SafeString:
    """At most `chars` characters of `text`, the whole of it (or `title`) in the hover."""
    short = text if len(text) <= chars else text[: chars - 1].rstrip() + "…"
    return format_html('<span title="{}">{}</span>', title or text, short)
