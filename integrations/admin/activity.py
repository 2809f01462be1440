"""The activity log's pages: one entry per run, minute of webhooks, test or change."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from gsync.admin_display import (
    BigTableAdmin,
    format_duration,
    pretty_json,
)
from gsync.admin_export import ExportAdmin
from integrations.admin.badges import badge, truncated
from integrations.models import ActivityLog

WEBHOOK_ACTIVITY = (
    ActivityLog.ActivityType.WEBHOOK_RECEIVED,
    ActivityLog.ActivityType.WEBHOOK_REPROCESSED,
)


@admin.register(ActivityLog)
class ActivityLogAdmin(ExportAdmin, BigTableAdmin):
    list_display = [
        "started_at",
        "integration",
        "kind",
        "status_badge",
        "counts",
        "duration",
        "short_message",
    ]
    list_filter = [
        "integration",
        "activity_type",
        "status",
        "trigger",
        ("started_at", admin.DateFieldListFilter),
    ]
    search_fields = ["message", "error_message"]
    date_hierarchy = "started_at"
    list_select_related = ["integration"]
    sortable_by = ["started_at"]
    # Every column of the log, the integration by name.
    export_fields = [
        ("integration", "integration__name") if field.name == "integration" else (field.name,) * 2
        for field in ActivityLog._meta.concrete_fields
    ]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "integration",
                    ("activity_type", "status"),
                    ("trigger", "direction"),
                    ("started_at", "completed_at", "duration"),
                ]
            },
        ),
        ("Message", {"fields": ["message", "error_message"]}),
        (
            "Counts",
            {
                "fields": [
                    "devices_seen",
                    "readings_fetched",
                    "readings_inserted",
                    "readings_duplicate",
                    "api_calls",
                    "retries",
                ]
            },
        ),
        ("Window synced", {"fields": [("window_start", "window_end")]}),
        ("Details", {"fields": ["metadata_display"]}),
    ]
    readonly_fields = ["duration", "metadata_display"]

    def get_fieldsets(self, request: HttpRequest, obj: ActivityLog | None = None) -> Any:
        if obj is None or obj.activity_type not in WEBHOOK_ACTIVITY:
            return self.fieldsets
        # A webhook entry counts deliveries; it makes no API call and sees no device list.
        webhook_counts = [
            "deliveries",
            "readings_fetched",
            "readings_inserted",
            "readings_duplicate",
        ]
        return [
            (name, {"fields": webhook_counts}) if name == "Counts" else (name, options)
            for name, options in self.fieldsets
        ]

    @admin.display(description="Activity", ordering="activity_type")
    def kind(self, obj: ActivityLog) -> SafeString:
        return format_html(
            '{}<div class="help" title="Trigger">{}</div>',
            obj.get_activity_type_display(),
            obj.get_trigger_display(),
        )

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: ActivityLog) -> SafeString:
        return badge(obj.get_status_display(), obj.status)

    @admin.display(description="Counts")
    def counts(self, obj: ActivityLog) -> SafeString | str:
        """One short line, only the counts the entry's kind has (a webhook minute makes no API
        call and sees no device list); each named in full on hover."""
        if obj.activity_type in WEBHOOK_ACTIVITY:
            parts = [(obj.deliveries, "deliveries", "webhook deliveries")]
        else:
            parts = [
                (obj.devices_seen, "dev", "devices seen"),
                (obj.api_calls, "calls", "API calls"),
            ]
            if obj.retries:
                parts.append((obj.retries, "retries", "retried calls"))
        parts[1:1] = [
            (obj.readings_inserted, "new", "readings inserted"),
            (obj.readings_duplicate, "dup", "duplicates (already stored)"),
        ]
        if not any(n for n, _, _ in parts):
            return "-"
        text = " · ".join(f"{n:,}\N{NO-BREAK SPACE}{short}" for n, short, _ in parts)
        title = ", ".join(f"{whole} {n:,}" for n, _, whole in parts)
        return format_html('<span title="{}">{}</span>', title, text)

    @admin.display(description="Duration", ordering="response_time_ms")
    def duration(self, obj: ActivityLog) -> str:
        return format_duration(obj.response_time_ms)

    @admin.display(description="Message")
    def short_message(self, obj: ActivityLog) -> SafeString | str:
        text = obj.error_message or obj.message
        return truncated(" ".join(text.split()), chars=60, title=text) if text else "-"

    @admin.display(description="Metadata")
    def metadata_display(self, obj: ActivityLog) -> SafeString:
        return pretty_json(obj.metadata)
