"""CSV and JSON-lines export of a changelist as it is filtered and searched.

`/admin/<app>/<model>/export/csv/?<the list's query string>` builds the changelist the page would
show (its filters, search and order) and streams every row of it, not only the page: a generator
over `values_list(...).iterator(chunk_size=...)` (a server-side cursor on PostgreSQL), so a
million rows cost one chunk of memory, never the list. Times are ISO 8601 in UTC.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponseBadRequest
from django.http.response import HttpResponseBase, StreamingHttpResponse
from django.urls import URLPattern, path
from django.utils import timezone

from gsync.admin_filters import TimeRangeFilter

CHUNK_ROWS = 2000
FORMATS = {"csv": ("text/csv; charset=utf-8", "csv"), "jsonl": ("application/x-ndjson", "jsonl")}


class ExportAdmin(admin.ModelAdmin):
    """A ModelAdmin whose list exports: set `export_fields` to (column, ORM path) pairs."""

    export_fields: ClassVar[list[tuple[str, str]]] = []
    export_chunk_rows = CHUNK_ROWS

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_export"
        view = self.admin_site.admin_view(self.export_view)
        return [path("export/<str:fmt>/", view, name=name), *super().get_urls()]

    def export_view(self, request: HttpRequest, fmt: str) -> HttpResponseBase:
        if fmt not in FORMATS:
            raise Http404(f"no export format {fmt!r}: csv or jsonl")
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        errors = [
            e for f in changelist.filter_specs if isinstance(f, TimeRangeFilter) for e in f.errors
        ]
        if errors:
            return HttpResponseBadRequest(
                "Not exported: " + " ".join(errors), content_type="text/plain"
            )
        columns = [column for column, _ in self.export_fields]
        rows = changelist.queryset.values_list(*(p for _, p in self.export_fields))
        chunks = rows.iterator(chunk_size=self.export_chunk_rows)
        lines = csv_lines(columns, chunks) if fmt == "csv" else json_lines(columns, chunks)
        content_type, extension = FORMATS[fmt]
        response = StreamingHttpResponse(lines, content_type=content_type)
        stamp = f"{timezone.now():%Y%m%d-%H%M%S}"
        filename = f"{self.opts.verbose_name_plural}-{stamp}.{extension}".replace(" ", "-")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


class _Line:
    """What csv.writer writes to: each row comes back as its line (Django's streaming CSV)."""

    def write(self, value: str) -> str:
        return value


def csv_lines(columns: list[str], rows: Iterable[tuple[Any, ...]]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(columns)
    for row in rows:
        yield writer.writerow([_csv_cell(value) for value in row])


def json_lines(columns: list[str], rows: Iterable[tuple[Any, ...]]) -> Iterator[str]:
    for row in rows:
        document = dict(zip(columns, (_json_value(value) for value in row), strict=True))
        yield json.dumps(document, ensure_ascii=False, default=str) + "\n"


def _csv_cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return _json_value(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value
