"""A time range filter for the big changelists: from/to in the syntax the commands and the
Backfill form take (integrations.moments: an ISO date or datetime, naive meaning UTC, or an age
such as 24h), with preset ranges one click away. Bad input is named in a message, and the list
shows nothing rather than everything: an export of "everything" by a typo is not what was asked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from integrations.moments import parse_moment

PRESETS = [
    ("1h", "Last hour"),
    ("6h", "Last 6 hours"),
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
]
FROM, TO = "from", "to"


class TimeRangeFilter(admin.ListFilter):
    """`?from=...&to=...` on `field_name` (from inclusive, to exclusive). Subclass and set
    `field_name` and `title`."""

    field_name = ""
    template = "admin/gsync/time_range_filter.html"

    def __init__(
        self, request: HttpRequest, params: dict[str, Any], model: type[Model], model_admin: Any
    ) -> None:
        super().__init__(request, params, model, model_admin)
        self.typed = {name: _last(params.pop(name, None)) for name in (FROM, TO)}
        self.errors: list[str] = []
        self.range = self._parse(timezone.now())
        for error in self.errors:
            messages.error(request, f"Filter by {self.title}: {error}")
        self.kept: list[tuple[str, str]] = []

    def _parse(self, now: datetime) -> dict[str, datetime]:
        parsed = {}
        for name, text in self.typed.items():
            if not text:
                continue
            try:
                parsed[name] = parse_moment(text, now=now)
            except ValueError as exc:
                self.errors.append(f"{name.capitalize()}: {exc}")
        if FROM in parsed and TO in parsed and parsed[FROM] >= parsed[TO]:
            self.errors.append("From must be before To.")
        return parsed

    @property
    def invalid(self) -> bool:
        return bool(self.errors)

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return [FROM, TO]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.errors:
            return queryset.none()
        if start := self.range.get(FROM):
            queryset = queryset.filter(**{f"{self.field_name}__gte": start})
        if end := self.range.get(TO):
            queryset = queryset.filter(**{f"{self.field_name}__lt": end})
        return queryset

    def choices(self, changelist: ChangeList) -> Any:
        # The form's hidden inputs: every other filter and the search stay as they are.
        self.kept = [(k, v) for k, v in changelist.params.items() if k not in (FROM, TO)]
        yield {
            "selected": not any(self.typed.values()),
            "query_string": changelist.get_query_string(remove=[FROM, TO]),
            "display": "Any time",
        }
        for value, label in PRESETS:
            yield {
                "selected": self.typed == {FROM: value, TO: None},
                "query_string": changelist.get_query_string({FROM: value}, [TO]),
                "display": label,
            }


def _last(values: list[str] | str | None) -> str | None:
    if isinstance(values, list):
        values = values[-1] if values else None
    return values.strip() or None if values else None
