"""Admin for devices and their readings: read-only mirrors of Golioth, staff only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import smart_split, unescape_string_literal

from gsync.admin_display import BigTableAdmin, ReadOnlyAdmin, admin_time, pretty_json, short_json
from gsync.admin_export import ExportAdmin
from gsync.admin_filters import TimeRangeFilter
from integrations.admin.badges import truncated
from telemetry.models import Device, TelemetryRecord

LATEST_READINGS = 20
# Keys shown as columns, and characters of each value: the page fits 1280 px beside the
# navigation; every key and the whole value stay in the reading's raw JSON.
READING_COLUMNS = 8
READING_CELL_CHARS = 24
# Characters of each of them shown: twenty readings of megabytes would be a page of megabytes.
LATEST_READING_CHARS = 4096


@admin.register(Device)
class DeviceAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "external_id",
        "integration",
        "status",
        "last_seen",
        "firmware_version",
        "tag_list",
    ]
    # hardware_ids is a JSON list: icontains on its text works on SQLite and PostgreSQL alike.
    search_fields = ["name", "external_id", "hardware_ids"]
    search_help_text = "Name, Golioth id or hardware id."
    list_filter = ["integration", "status", "firmware_version"]
    list_select_related = ["integration"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    ("name", "external_id"),
                    "integration",
                    ("status", "enabled"),
                    ("last_seen", "last_report"),
                    "hardware_ids",
                    "tag_list",
                    ("cohort_id", "blueprint_id"),
                ]
            },
        ),
        ("Firmware", {"fields": ["firmware_version", "firmware_display"]}),
        ("Latest readings", {"fields": ["latest_readings"]}),
        ("Golioth metadata", {"fields": ["metadata_display", ("created_at", "updated_at")]}),
    ]
    readonly_fields = ["tag_list", "firmware_display", "metadata_display", "latest_readings"]

    @admin.display(description="Tags")
    def tag_list(self, obj: Device) -> str:
        return obj.tag_list

    @admin.display(description="metadata.update")
    def firmware_display(self, obj: Device) -> SafeString:
        return pretty_json(obj.firmware)

    @admin.display(description="Metadata")
    def metadata_display(self, obj: Device) -> SafeString:
        return pretty_json(obj.metadata)

    @admin.display(description="Latest readings")
    def latest_readings(self, obj: Device) -> SafeString:
        readings = list(obj.readings.order_by("-device_timestamp", "-id")[:LATEST_READINGS])
        link = reverse("admin:telemetry_telemetryrecord_changelist") + f"?device={obj.pk}"
        more = format_html(
            '<p>The newest {} are shown. <a href="{}">All readings of this device</a></p>',
            LATEST_READINGS,
            link,
        )
        if not readings:
            return format_html("<p>No readings yet.</p>{}", more)
        return format_html("{}{}", readings_table(readings), more)


def readings_table(readings: list[TelemetryRecord]) -> SafeString:
    """One row a reading, one column a key (nested keys flattened a.b.c; the first
    READING_COLUMNS of them), each reading's raw JSON one click away."""
    flat = [flatten(r.telemetry) for r in readings]
    keys = sorted({key for values in flat for key in values})
    shown, hidden = keys[:READING_COLUMNS], len(keys) - READING_COLUMNS
    header = format_html_join("", "<th>{}</th>", ((key,) for key in shown))
    if hidden > 0:
        header = format_html('{}<th title="in each raw JSON">+{} keys</th>', header, hidden)
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td>{}<td>{}</td></tr>",
        (
            (
                admin_time(r.device_timestamp),
                r.path or "-",
                r.get_source_display(),
                _cells(values, shown, extra=hidden > 0),
                _raw(r),
            )
            for r, values in zip(readings, flat, strict=True)
        ),
    )
    return format_html(
        '<div style="overflow-x: auto; max-width: 100%;"><table class="gsync-readings">'
        "<thead><tr><th>Time</th><th>Path</th><th>Source</th>{}<th>Raw</th></tr></thead>"
        "<tbody>{}</tbody></table></div>",
        header,
        rows,
    )


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": {"c": 1}}} as {"a.b.c": 1}; lists and scalars are values."""
    if not isinstance(value, dict):
        return {prefix or "value": value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        flat.update(flatten(item, name) if isinstance(item, dict) and item else {name: item})
    return flat


def _cells(values: dict[str, Any], keys: list[str], *, extra: bool) -> SafeString:
    cells = format_html_join(
        "",
        "<td>{}</td>",
        ((_cell(values[key]) if key in values else "",) for key in keys),
    )
    return format_html("{}<td></td>", cells) if extra else cells


def _cell(value: Any) -> SafeString:
    text = value if isinstance(value, str) else short_json(value, limit=READING_CELL_CHARS * 4)
    return truncated(text, chars=READING_CELL_CHARS)


def _raw(reading: TelemetryRecord) -> SafeString:
    return format_html(
        "<details><summary>JSON</summary>{}</details>",
        pretty_json(reading.telemetry, limit=LATEST_READING_CHARS),
    )


class DeviceListFilter(admin.SimpleListFilter):
    """One device (`?device=<pk>`, from a device's page): never a list of every device."""

    title = "device"
    parameter_name = "device"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        if not value or not value.isdigit():
            return []
        return [(str(device.pk), str(device)) for device in Device.objects.filter(pk=value)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(device_id=int(value))
        return queryset


class ReadingTimeFilter(TimeRangeFilter):
    title = "reading time"
    field_name = "device_timestamp"


@admin.register(TelemetryRecord)
class TelemetryRecordAdmin(ExportAdmin, BigTableAdmin):
    list_display = [
        "device_timestamp",
        "device",
        "integration",
        "path",
        "source",
        "time_exact",
        "short_telemetry",
    ]
    list_filter = [ReadingTimeFilter, "integration", "source", "time_exact", DeviceListFilter]
    # Exact matches only: each is an indexed lookup of a few devices, never a scan of readings.
    search_fields = ["=device__external_id", "=device__name"]
    search_help_text = "A device's Golioth id or name (exact, any case)."
    date_hierarchy = "device_timestamp"
    list_select_related = ["device", "integration"]
    sortable_by = ["device_timestamp"]
    export_fields = [
        ("device_timestamp", "device_timestamp"),
        ("device", "device__name"),
        ("device_id", "device__external_id"),
        ("integration", "integration__name"),
        ("path", "path"),
        ("source", "source"),
        ("time_exact", "time_exact"),
        ("received_at", "received_at"),
        ("telemetry", "telemetry"),
    ]
    fieldsets = [
        (None, {"fields": ["device", "integration", ("device_timestamp", "time_exact")]}),
        (None, {"fields": [("path", "source"), "received_at", "activity", "dedup_key"]}),
        ("Reading", {"fields": ["telemetry_display"]}),
    ]
    readonly_fields = ["telemetry_display"]

    @admin.display(description="Data")
    def short_telemetry(self, obj: TelemetryRecord) -> str:
        return short_json(obj.telemetry)

    @admin.display(description="Telemetry")
    def telemetry_display(self, obj: TelemetryRecord) -> SafeString:
        return pretty_json(obj.telemetry)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """As Django searches `search_fields` (each word names a device), but the devices are
        found first and their readings by device id: joined to devices, PostgreSQL walked the
        newest readings of every device to find one device's (8 s at 5M readings)."""
        if not search_term.strip():
            return queryset, False
        devices = Device.objects.all()
        for word in smart_split(search_term):
            if word[:1] in "\"'" and word[-1:] == word[:1]:
                word = unescape_string_literal(word)
            devices = devices.filter(Q(external_id__iexact=word) | Q(name__iexact=word))
        return queryset.filter(device_id__in=list(devices.values_list("pk", flat=True))), False
