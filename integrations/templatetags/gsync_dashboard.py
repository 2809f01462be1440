"""`{% gsync_dashboard %}`: the dashboard on the admin index (templates/admin/index.html)."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils import timezone

from integrations.admin.dashboard import dashboard_summary

register = template.Library()


@register.inclusion_tag("admin/integrations/dashboard.html", takes_context=True)
def gsync_dashboard(context: template.Context) -> dict[str, Any]:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.has_perm("integrations.view_deviceintegration"):
        return {"dashboard": None}
    range_key = request.GET.get("range") if request is not None else None
    return {"dashboard": dashboard_summary(now=timezone.now(), range_key=range_key)}
