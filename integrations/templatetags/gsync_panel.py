"""`{% badge text state title %}` and `{% age_badge age %}`: the coloured badges of the
integration pages and the dashboard (integrations.admin.badges)."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from integrations.admin.badges import badge as render_badge
from integrations.admin.lag import Age

register = template.Library()


@register.simple_tag
def badge(text: str, state: str, title: str = "") -> SafeString:
    return render_badge(text, state, title=title)


@register.simple_tag
def age_badge(age: Age) -> SafeString:
    return render_badge(age.text, age.state, title=age.title)
