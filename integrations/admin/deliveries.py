"""Webhook deliveries' pages: each raw delivery kept, its outcome, and re-processing."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from gsync.admin_display import (
    BODY_DISPLAY_LIMIT,
    BigTableAdmin,
    pretty_json,
)
from gsync.redaction import REDACTED, is_secret_name
from integrations.admin.badges import badge, truncated
from integrations.admin.links import entry_link
from integrations.golioth.payloads import PayloadError
from integrations.golioth.webhook_payloads import decode_body
from integrations.models import WebhookDelivery
from integrations.push.deliveries import reprocess_deliveries


def redact_for_display(headers: dict[str, Any]) -> dict[str, Any]:
    return {
        name: REDACTED if is_secret_name(name) else value for name, value in (headers or {}).items()
    }


def body_for_display(body: bytes, *, content_type: str) -> SafeString:
    """JSON pretty-printed (CBOR decoded as the webhook decodes it, so with the same bounds),
    else text, else hex; at most BODY_DISPLAY_LIMIT bytes."""
    note = ""
    if len(body) > BODY_DISPLAY_LIMIT:
        note = f"First {BODY_DISPLAY_LIMIT:,} of {len(body):,} bytes.\n"
    shown = body[:BODY_DISPLAY_LIMIT]
    try:
        if "cbor" in content_type.lower() and not note:
            return pretty_json(decode_body(shown, content_type="application/cbor"))
        text = shown.decode("utf-8")
    except (UnicodeDecodeError, ValueError) as exc:
        # PayloadError is a ValueError: a CBOR bomb shows its reason and its bytes, no more.
        why = f"{exc}\n" if isinstance(exc, PayloadError) else ""
        return format_html(
            '<pre class="gsync-body">{}{}(not text; hex)\n{}</pre>', note, why, shown.hex()
        )
    try:
        return pretty_json(json.loads(text)) if not note else _text_block(note, text)
    except ValueError:
        return _text_block(note, text)


def _text_block(note: str, text: str) -> SafeString:
    return format_html('<pre class="gsync-body">{}{}</pre>', note, text)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(BigTableAdmin):
    list_display = [
        "received_at",
        "integration",
        "device",
        "status",
        "outcome_badge",
        "readings_stored",
        "short_error",
    ]
    list_filter = ["outcome", "integration"]
    search_fields = ["device_external_id"]
    search_help_text = "A device's Golioth id (exact)."
    list_select_related = ["integration"]
    date_hierarchy = "received_at"
    sortable_by = ["received_at"]
    actions = ["reprocess"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "integration",
                    ("received_at", "processed_at", "attempts"),
                    ("outcome", "response_status"),
                    "device_external_id",
                    ("readings_stored", "readings_duplicate"),
                    ("content_type", "remote_addr"),
                ]
            },
        ),
        ("Request", {"fields": ["headers_display", "body_display"]}),
        ("Error", {"fields": ["error", "traceback_display"]}),
    ]
    readonly_fields = ["headers_display", "body_display", "traceback_display"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookDelivery]:
        # Bodies are up to 256 KiB each: never load them for a list.
        return super().get_queryset(request).defer("body", "traceback")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[WebhookDelivery], search_term: str
    ) -> tuple[QuerySet[WebhookDelivery], bool]:
        # Equality, case kept: the index delivery_device answers it (iexact's UPPER() would
        # scan every delivery kept).
        term = search_term.strip()
        return (queryset.filter(device_external_id=term) if term else queryset), False

    @admin.action(description="Re-process selected deliveries", permissions=["reprocess"])
    def reprocess(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        deliveries = queryset.defer(None).select_related("integration").order_by("received_at")
        result = reprocess_deliveries(deliveries)
        not_stored = result.failed + result.counts.get(WebhookDelivery.Outcome.REJECTED, 0)
        level = messages.WARNING if not_stored else messages.SUCCESS
        links = format_html_join(", ", "{}", ((entry_link(e),) for e in result.entries))
        message = format_html("{} See {}.", result.describe(), links) if result.entries else None
        self.message_user(request, message or result.describe(), level)

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("integrations.reprocess_webhookdelivery")

    @admin.display(description="Device", ordering="device_external_id")
    def device(self, obj: WebhookDelivery) -> SafeString | str:
        if not obj.device_external_id:
            return "-"
        readings = reverse("admin:telemetry_telemetryrecord_changelist")
        query = urlencode({"q": obj.device_external_id})
        title = "This device's readings"
        return format_html(
            '<a href="{}?{}" title="{}">{}</a>',
            readings,
            query,
            title,
            truncated(obj.device_external_id, chars=14, title=title),
        )

    @admin.display(description="HTTP", ordering="response_status")
    def status(self, obj: WebhookDelivery) -> SafeString | str:
        code = obj.response_status
        if code is None:
            return "-"
        return badge(str(code), f"{code // 100}xx", title=f"The webhook answered {code}")

    @admin.display(description="Outcome", ordering="outcome")
    def outcome_badge(self, obj: WebhookDelivery) -> SafeString:
        label = obj.get_outcome_display()
        return badge(obj.outcome, obj.outcome, title=label)

    @admin.display(description="Error")
    def short_error(self, obj: WebhookDelivery) -> SafeString | str:
        return truncated(obj.error, chars=60) if obj.error else "-"

    @admin.display(description="Headers (secrets redacted)")
    def headers_display(self, obj: WebhookDelivery) -> SafeString:
        return pretty_json(redact_for_display(obj.headers))

    @admin.display(description="Body")
    def body_display(self, obj: WebhookDelivery) -> SafeString:
        return body_for_display(bytes(obj.body or b""), content_type=obj.content_type)

    @admin.display(description="Traceback")
    def traceback_display(self, obj: WebhookDelivery) -> SafeString | str:
        return format_html("<pre>{}</pre>", obj.traceback) if obj.traceback else "-"
