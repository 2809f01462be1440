"""`{% gsync_date_hierarchy cl %}`: the date drill-down for changelists of big tables."""

from __future__ import annotations

from typing import Any

from django import template
from django.contrib.admin.views.main import ChangeList

from gsync.admin_display import date_drilldown

register = template.Library()


@register.inclusion_tag("admin/date_hierarchy.html")
def gsync_date_hierarchy(cl: ChangeList) -> dict[str, Any]:
    return date_drilldown(cl)
