"""Admin for integrations, the activity log and webhook deliveries: staff only, Django's
per-model permissions.

Thin adapters: editing goes through integrations.admin.forms.IntegrationForm, the change
entry through integrations.settings_changes, re-processing through integrations.push.deliveries.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html
from django.utils.safestring import SafeString

from gsync.admin_display import (
    pretty_json,
)
from integrations.admin.badges import truncated
from integrations.admin.forms import IntegrationForm, secret_added
from integrations.admin.panel import control_panel
from integrations.admin.scheduling import ACTIONS, HEALTH_COLUMNS, SchedulingAdminMixin
from integrations.due import due
from integrations.models import ActivityLog, DeviceIntegration
from integrations.pull.retention import retention_warnings
from integrations.push.pipeline import pipeline_yaml
from integrations.setting_table import SETTINGS
from integrations.settings_changes import log_settings_change
from integrations.sync_settings import SettingsError, SyncSettings

admin.site.site_header = "gsync"
admin.site.site_title = "gsync admin"
admin.site.index_title = "Golioth data, mirrored"

SYNC_STATE_FIELDS = [
    "last_sync_at",
    "last_sync_status",
    "sync_error",
    "sync_cursor",
    "consecutive_failures",
    "locked_until",
    "locked_by",
    "queued_at",
    "last_skip_reason",
    "next_due",
    "verified_through_list",
    "last_reconcile",
]
CONNECTION_FIELDS = ["name", "status", "project_id", "base_url", "api_key"]
SYNC_FIELDS = [s.attr for s in SETTINGS if s.group == "sync"]
RETENTION_FIELDS = [s.attr for s in SETTINGS if s.group == "retention"]
WINDOW_FIELDS = ["window_enabled", ("window_start", "window_end"), "window_timezone", "window_days"]
FILTER_FIELDS = [
    ("filter_tags", "filter_tag_match"),
    "filter_device_ids",
    "filter_name_pattern",
    "filter_cohort_ids",
    "filter_blueprint_ids",
    "filter_enabled_only",
    "filter_reported_within_hours",
]
WEBHOOK_FIELDS = [
    "webhook_enabled",
    *(s.attr for s in SETTINGS if s.group == "webhook"),
    "generate_webhook_secret",
]
WEBHOOK_CHANGE_FIELDS = [
    "webhook_url_display",
    *WEBHOOK_FIELDS,
    "remove_webhook_secrets",
    "webhook_rejected_count",
    "pipeline_display",
]
SETTINGS_FIELDSETS = [
    ("Connection", {"fields": CONNECTION_FIELDS}),
    ("Sync", {"fields": SYNC_FIELDS}),
    (
        "Time window",
        {
            "fields": WINDOW_FIELDS,
            "description": "Outside the window the scheduled pull does not run, in the window's "
            "own time zone. Webhooks are accepted at any time.",
        },
    ),
    (
        "Device filter",
        {
            "fields": FILTER_FIELDS,
            "description": "Which devices the pull reads. All blank: every device.",
        },
    ),
    (
        "Retention",
        {
            "fields": RETENTION_FIELDS,
            "description": "The daily prune deletes this integration's older readings, a few "
            "thousand at a time (README “Retention”).",
        },
    ),
]
PIPELINE_HELP = (
    "One Golioth pipeline per document below, built from Mirrored paths (JSON and CBOR devices; "
    "/logs stays out unless listed). Disable other pipelines that also deliver these paths to "
    "LightDB Stream, or each reading is stored twice; the comments explain buffered uploads."
)
# What staff who may only view an integration see: display fields, never the form's inputs
# (rendering those read-only would call model methods that share their names).
VIEW_ONLY_FIELDSETS = [
    ("Connection", {"fields": ["name", "status", "project_id", "base_url", "api_key_display"]}),
    ("Settings", {"fields": ["settings_display"]}),
    (
        "Webhook",
        {
            "fields": [
                "webhook_url_display",
                "webhook_enabled",
                "webhook_secrets_display",
                "webhook_rejected_count",
                "pipeline_display",
            ]
        },
    ),
    ("Sync state", {"fields": SYNC_STATE_FIELDS}),
]
# Header names shown redacted even if a stored delivery somehow kept one (defense in depth).


def _sync_settings(integration: DeviceIntegration) -> SyncSettings | None:
    try:
        return integration.sync_settings
    except SettingsError:
        return None


# Columns no changelist may filter on: a filter answers yes or no per guess, so the ciphertext
# or the secret would leak byte by byte (Django allows any lookup on a model's own columns).
SECRET_COLUMNS = frozenset({"api_key_encrypted", "webhook_secrets", "webhook_token"})


@admin.register(DeviceIntegration)
class DeviceIntegrationAdmin(SchedulingAdminMixin):
    form = IntegrationForm

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if lookup.split("__", 1)[0] in SECRET_COLUMNS:
            return False
        return super().lookup_allowed(lookup, value, request)

    # Fits 1280 px beside the admin's navigation (issue 12): status, syncEnabled and interval
    # share one column, the project sits under the name, the last and next run share one, long
    # texts are cut with the whole text on hover. No filter sidebar: it took a quarter of the
    # width, and the status it offered is in the Schedule column (and sortable).
    list_display = [
        "name_and_project",
        "schedule",
        *HEALTH_COLUMNS,
        "verified",
        "webhook",
    ]
    list_display_links = ["name_and_project"]
    change_form_template = "admin/integrations/deviceintegration/change_form.html"
    search_fields = ["name", "project_id"]
    # A plain list: other modules append their actions (Sync now, Test connection, ...).
    actions: list[Any] = [*ACTIONS]
    readonly_fields = [
        "webhook_url_display",
        "pipeline_display",
        "webhook_rejected_count",
        *SYNC_STATE_FIELDS,
    ]

    def get_fieldsets(self, request: HttpRequest, obj: DeviceIntegration | None = None) -> list:
        if obj is not None and not self.has_change_permission(request, obj):
            return VIEW_ONLY_FIELDSETS
        if obj is None:  # the webhook URL, secrets and state exist once saved
            return [*SETTINGS_FIELDSETS, ("Webhook", {"fields": WEBHOOK_FIELDS})]
        return [
            *SETTINGS_FIELDSETS,
            ("Webhook", {"fields": WEBHOOK_CHANGE_FIELDS}),
            ("Sync state", {"fields": SYNC_STATE_FIELDS}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is not None and not self.has_change_permission(request, obj):
            return flatten_fieldsets(cast(Any, VIEW_ONLY_FIELDSETS))
        return list(self.readonly_fields)

    def save_model(
        self, request: HttpRequest, obj: DeviceIntegration, form: IntegrationForm, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        log_settings_change(obj, before=form.before, trigger=ActivityLog.Trigger.ADMIN)
        # For the response only: a message would carry it in the (signed, readable) cookie.
        request.gsync_new_webhook_secret = form.generated_secret  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: DeviceIntegration, *args: Any) -> Any:
        return self._new_secret_page(request, obj) or super().response_add(request, obj, *args)

    def response_change(self, request: HttpRequest, obj: DeviceIntegration) -> Any:
        return self._new_secret_page(request, obj) or super().response_change(request, obj)

    def _new_secret_page(self, request: HttpRequest, obj: DeviceIntegration) -> Any:
        """The page that made a new webhook secret shows it, once, and is never cached."""
        secret = getattr(request, "gsync_new_webhook_secret", "")
        if not secret:
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": f"New webhook secret for {obj}",
            "integration": obj,
            "secret": secret,
            "opts": self.model._meta,
        }
        response = TemplateResponse(request, "admin/integrations/new_webhook_secret.html", context)
        add_never_cache_headers(response)
        return response

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        integration = self.get_object(request, unquote(object_id))
        if request.method == "GET" and integration is not None:
            for warning in retention_warnings(integration, now=timezone.now()):
                self.message_user(request, warning, messages.WARNING)
        if integration is not None:
            extra_context = {
                **(extra_context or {}),
                "gsync_panel": control_panel(integration, now=timezone.now()),
                "gsync_buttons": self.panel_buttons(request, integration),
                "gsync_act_url": reverse(
                    "admin:integrations_deviceintegration_act", args=[integration.pk]
                ),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="Name", ordering="name")
    def name_and_project(self, obj: DeviceIntegration) -> SafeString:
        return format_html(
            '{}<div class="help">{}</div>', obj.name, truncated(obj.project_id, chars=28)
        )

    @admin.display(description="Schedule", ordering="status")
    def schedule(self, obj: DeviceIntegration) -> str:
        settings = _sync_settings(obj)
        if settings is None:
            return f"{obj.get_status_display()}, invalid settings"
        if not settings.sync_enabled:
            return f"{obj.get_status_display()}, sync off"
        return f"{obj.get_status_display()}, every {self.sync_interval(obj)}"

    @admin.display(boolean=True, description="Sync enabled")
    def sync_enabled(self, obj: DeviceIntegration) -> bool | None:
        settings = _sync_settings(obj)
        return settings.sync_enabled if settings else None

    @admin.display(description="Interval")
    def sync_interval(self, obj: DeviceIntegration) -> str:
        settings = _sync_settings(obj)
        if settings is None:
            return "invalid settings"
        seconds = settings.sync_interval_seconds
        return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"

    @admin.display(description="Webhook URL")
    def webhook_url_display(self, obj: DeviceIntegration) -> SafeString:
        return format_html(
            '<input type="text" readonly value="{}" size="90" aria-label="Webhook URL">'
            '<div class="help">Golioth pipelines POST readings here.</div>',
            obj.webhook_url,
        )

    @admin.display(description="Golioth pipelines")
    def pipeline_display(self, obj: DeviceIntegration) -> SafeString:
        return format_html(
            '<div class="help">{}</div><pre class="gsync-pipeline">{}</pre>',
            PIPELINE_HELP,
            pipeline_yaml(obj),
        )

    @admin.display(description="API key")
    def api_key_display(self, obj: DeviceIntegration) -> str:
        return obj.api_key_display

    @admin.display(description="Settings")
    def settings_display(self, obj: DeviceIntegration) -> SafeString:
        return pretty_json(obj.settings)

    @admin.display(description="Webhook secrets")
    def webhook_secrets_display(self, obj: DeviceIntegration) -> str:
        # When each was added, never the secret or its hint: enough to see a rotation is due.
        added = [secret_added(secret) for secret in obj.webhook_secrets]
        return f"{len(added)} active, added {', '.join(added)}" if added else "none"

    @admin.display(description="Verified", ordering="verified_through")
    def verified(self, obj: DeviceIntegration) -> SafeString:
        return format_html(
            '<span title="verified complete through">{}</span>', self.verified_through_list(obj)
        )

    @admin.display(boolean=True, description="Webhook", ordering="webhook_enabled")
    def webhook(self, obj: DeviceIntegration) -> bool:
        return obj.webhook_enabled

    @admin.display(description="Verified complete through", ordering="verified_through")
    def verified_through_list(self, obj: DeviceIntegration) -> str:
        if obj.verified_through is None:
            return "not yet"
        return f"{obj.verified_through.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"

    @admin.display(description="Last reconcile")
    def last_reconcile(self, obj: DeviceIntegration) -> SafeString | str:
        entry = (
            ActivityLog.objects.filter(
                integration=obj, activity_type=ActivityLog.ActivityType.RECONCILE
            )
            .exclude(status=ActivityLog.Status.SKIPPED)
            .first()
        )
        if entry is None:
            return "never (the “Verify completeness” action runs one)"
        url = reverse("admin:integrations_activitylog_change", args=[entry.pk])
        window = (
            f"{entry.window_start.astimezone(UTC):%Y-%m-%d %H:%M:%S}–"
            f"{entry.window_end.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
            if entry.window_start and entry.window_end
            else ""
        )
        return format_html(
            '<a href="{}">{} at {} UTC</a> ({}): {}',
            url,
            entry.get_status_display(),
            f"{entry.started_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
            window,
            entry.error_message or entry.message,
        )

    @admin.display(description="Next run")
    def next_due(self, obj: DeviceIntegration) -> str:
        return due(obj, now=timezone.now()).describe()
