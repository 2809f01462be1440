"""What the admin of both apps shares: JSON shown readably, and changelists that stay fast on
tables of millions of rows (telemetry, activity, deliveries).

Three things make Django's changelist slow there, and all are replaced:
- the paginator's `SELECT COUNT(*)` over the whole (filtered) table: `CappedCountPaginator`
  counts at most `cap` + 1 rows and the page says "10,000+";
- a far page's `OFFSET`, which reads every skipped row whole: the same paginator reads the
  page's keys first, then only its rows;
- `date_hierarchy`'s `SELECT DISTINCT date_trunc(...)` over the whole table: `date_drilldown`
  offers the years, months or days between the first and the last row instead, found with one
  MIN/MAX query that an index on the date column answers. A year or month with no rows can show.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any, cast

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Page, Paginator
from django.db.models import Max, Min, QuerySet
from django.http import HttpRequest
from django.utils import formats, timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import capfirst

BODY_DISPLAY_LIMIT = 64 * 1024
# Characters of one JSON value a page shows: a stored reading, a body or metadata can be
# megabytes (older rows, before GSYNC_MAX_READING_BYTES), and so would its page be.
JSON_DISPLAY_LIMIT = 64 * 1024


def pretty_json(value: Any, *, limit: int = JSON_DISPLAY_LIMIT) -> SafeString:
    text, cut = bounded_json(value, limit=limit, indent=2)
    note = f"\n… truncated: the first {limit:,} characters are shown" if cut else ""
    return format_html('<pre class="gsync-json">{}{}</pre>', text, note)


def short_json(value: Any, *, limit: int = 80) -> str:
    text, cut = bounded_json(value, limit=limit - 1, separators=(",", ":"))
    return f"{text}…" if cut else text


def bounded_json(value: Any, *, limit: int, **options: Any) -> tuple[str, bool]:
    """`value` as JSON up to `limit` characters, and whether it was cut: the encoder stops
    there, so a huge value costs what the page shows, not its size."""
    encoder = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=str, **options)
    chunks, size = [], 0
    for chunk in encoder.iterencode(value):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return "".join(chunks)[:limit], True
    return "".join(chunks), False


def admin_time(moment: datetime | None) -> str:
    """A time as the changelists show theirs (gsync.formats: 2026-03-01 12:00:05, TIME_ZONE),
    for the HTML gsync builds itself."""
    return formats.localize(timezone.localtime(moment)) if moment else "-"


def format_duration(milliseconds: int | None) -> str:
    if milliseconds is None:
        return "-"
    if milliseconds < 1000:
        return f"{milliseconds} ms"
    seconds = milliseconds / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s"


class CappedCountPaginator(Paginator):
    """Counts at most `cap` + 1 rows (`SELECT COUNT(*) FROM (... LIMIT cap+1)`), so a page view
    costs the same on a thousand rows as on five million. Pages past the cap are not offered:
    narrow the list with a filter or the date drill-down instead."""

    cap = 10_000

    @cached_property
    def count(self) -> int:
        # Unordered: any cap + 1 matching rows will do, and an ORDER BY makes PostgreSQL walk the
        # ordering's index through every row a filter skips (125 ms for "source = webhook" at
        # 5M readings, bench/bench_admin.py).
        return cast(QuerySet, self.object_list).order_by()[: self.cap + 1].count()

    def page(self, number: Any) -> Page:
        """The page, its rows read in two steps (a deferred join): the keys of the page alone
        (from the ordering's index: an OFFSET skips index entries, not whole rows), then those
        rows with their related rows. Page 50 of the readings read 5,000 full rows to skip
        them (181 ms at 5M readings, bench/bench_admin.py)."""
        page = super().page(number)
        rows = cast(QuerySet, self.object_list)
        low, high = (page.number - 1) * self.per_page, page.end_index()
        keys = list(rows.values_list("pk", flat=True)[low:high])
        page.object_list = list(rows.filter(pk__in=keys))
        return page

    @property
    def capped(self) -> bool:
        return self.count > self.cap

    @property
    def count_label(self) -> str:
        """What the page shows instead of the count ("" when the count is exact)."""
        return f"{self.cap:,}+" if self.capped else ""


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows gsync writes itself (mirrored from Golioth or logged): staff look, never add, edit
    or delete. The next sync would overwrite an edit; a deleted device returns with it and takes
    its readings now."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class BigTableAdmin(ReadOnlyAdmin):
    """Read-only admin for a table that grows without bound: capped counts, a cheap date
    drill-down, no facet counts, no full-table count next to the search box."""

    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    change_list_template = "admin/gsync/big_change_list.html"


def date_drilldown(cl: ChangeList) -> dict[str, Any]:
    """Context for admin/date_hierarchy.html, as Django's `date_hierarchy` tag builds it, from the
    range of the rows shown instead of their distinct dates."""
    field = cl.date_hierarchy
    year, month, day = (cl.params.get(f"{field}__{part}") for part in ("year", "month", "day"))
    year, month, day = (int(value) if value else None for value in (year, month, day))
    span = cl.queryset.aggregate(first=Min(field), last=Max(field))
    if span["first"] is None:
        back = {"link": _link(cl, {}), "title": "All dates"} if year else None
        return {"show": bool(year), "back": back, "choices": []}
    first, last = (timezone.localtime(span[key]) for key in ("first", "last"))
    # Like Django's: start at the months of the only year, the days of the only month.
    if year is None and first.year == last.year:
        year = first.year
        if first.month == last.month:
            month = first.month
    if year and month and day:
        chosen = date(year, month, day)
        back = {"link": _link(cl, {"year": year, "month": month}), "title": _month_title(chosen)}
        return {"show": True, "back": back, "choices": [{"title": _day_title(chosen)}]}
    back, parts = _level(cl, year, month, first, last)
    choices = [{"link": _link(cl, filters), "title": title} for filters, title in parts]
    return {"show": True, "back": back, "choices": choices}


def _level(
    cl: ChangeList, year: int | None, month: int | None, first: datetime, last: datetime
) -> tuple[dict[str, str] | None, list[tuple[dict[str, int], str]]]:
    """The link back up and the choices of the level shown: days, months or years."""
    if year and month:
        back = {"link": _link(cl, {"year": year}), "title": str(year)}
        days = [date(year, month, d) for d in range(first.day, last.day + 1)]
        return back, [({"year": year, "month": month, "day": d.day}, _day_title(d)) for d in days]
    if year:
        back = {"link": _link(cl, {}), "title": "All dates"}
        months = [date(year, m, 1) for m in range(first.month, last.month + 1)]
        return back, [({"year": year, "month": m.month}, _month_title(m)) for m in months]
    return None, [({"year": y}, str(y)) for y in range(first.year, last.year + 1)]


def _link(cl: ChangeList, filters: dict[str, int]) -> str:
    field = cl.date_hierarchy
    return cl.get_query_string({f"{field}__{k}": v for k, v in filters.items()}, [f"{field}__"])


def _month_title(day: date) -> str:
    return capfirst(formats.date_format(day, "YEAR_MONTH_FORMAT"))


def _day_title(day: date) -> str:
    return capfirst(formats.date_format(day, "MONTH_DAY_FORMAT"))
