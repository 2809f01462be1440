"""The integrations changelist's health and lag columns and operating actions (issues 5, 12).

Mixed into `DeviceIntegrationAdmin`. Thin adapters: health rules live in
integrations.admin.dashboard, lag in integrations.admin.lag, queuing in integrations.scheduling,
the connection test in integrations.pull.connection. The readings and lag columns come from
annotated subqueries, so a page of 100 integrations costs the same queries as a page of 1.
The integration page's buttons (`panel_action_view`) run the same actions for one integration.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import IntegerField, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timesince import timesince

from integrations.admin.badges import badge, truncated
from integrations.admin.dashboard import DAY, SOURCES, integration_health
from integrations.admin.lag import annotate_lag, lag_of
from integrations.admin.links import entry_link, queued_entry_link
from integrations.due import due
from integrations.models import ActivityLog, DeviceIntegration
from integrations.moments import parse_moment
from integrations.pull.connection import test_connection
from integrations.scheduling import enqueue_backfill, enqueue_reconcile, enqueue_sync

HEALTH_COLUMNS = ["health", "runs", "lag", "readings_24h", "last_error"]
ACTIONS = ["sync_now", "verify_completeness", "test_connection", "backfill", "pause", "resume"]
Status = DeviceIntegration.Status
Kind = ActivityLog.ActivityType
# The entries a queued run writes, which its message links to once they exist.
SYNC_ENTRIES = (Kind.SYNC_IMPORT, Kind.SYNC_SKIPPED)
BACKFILL_ENTRIES = (Kind.BACKFILL, Kind.SYNC_SKIPPED)
RECONCILE_ENTRIES = (Kind.RECONCILE,)


def _readings_since(since: Any, source: str) -> Coalesce:
    entries = ActivityLog.objects.filter(
        integration=OuterRef("pk"), activity_type__in=SOURCES[source], started_at__gte=since
    )
    total = entries.values("integration").annotate(n=Sum("readings_inserted")).values("n")
    return Coalesce(Subquery(total, output_field=IntegerField()), 0)


class MomentField(forms.CharField):
    """A time as the commands take it (integrations.moments): 2026-03-01 12:00, 2h, 3d, now."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("widget", forms.TextInput(attrs={"size": 22}))
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, datetime):
            return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S}"
        return value

    def clean(self, value: Any) -> datetime | None:
        text = super().clean(value)
        if not text:
            return None
        try:
            return parse_moment(text, now=timezone.now())
        except ValueError as exc:
            raise forms.ValidationError(f"{str(exc)[:1].upper()}{str(exc)[1:]}") from None


class BackfillForm(forms.Form):
    since = MomentField(help_text="Start of the range: 2026-01-31 00:00 (UTC), or an age: 6h, 3d.")
    until = MomentField(help_text="End of the range (at most now): a time, an age, or now.")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since >= until:
            self.add_error("until", "The end must be after the start.")
        if until and until > timezone.now():
            self.add_error("until", "The end cannot be in the future.")
        return data


class SchedulingAdminMixin(admin.ModelAdmin):
    """Health columns, "Sync now", "Test connection", "Backfill…" (`run_sync` permission),
    "Pause" and "Resume" (change permission)."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[DeviceIntegration]:
        now = timezone.now()
        since = now - DAY
        queryset = (
            super()
            .get_queryset(request)
            .annotate(
                readings_push_24h=_readings_since(since, "push"),
                readings_pull_24h=_readings_since(since, "pull"),
                readings_backfill_24h=_readings_since(since, "backfill"),
            )
        )
        return annotate_lag(queryset, now=now)

    # --- columns ---------------------------------------------------------------------------------

    @admin.display(description="Health")
    def health(self, obj: DeviceIntegration) -> SafeString:
        health = integration_health(obj, now=timezone.now())
        return badge(health.state, health.state, title=health.reason)

    @admin.display(description="Last run / next", ordering="last_sync_at")
    def runs(self, obj: DeviceIntegration) -> SafeString:
        return format_html(
            "{}<div>next: {}</div>",
            self.last_run(obj),
            truncated(self.next_due_list(obj), chars=30),
        )

    def last_run(self, obj: DeviceIntegration) -> str:
        if obj.last_sync_at is None:
            return "never"
        return f"{timesince(obj.last_sync_at, depth=1)} ago ({obj.last_sync_status or '?'})"

    def next_due_list(self, obj: DeviceIntegration) -> str:
        return due(obj, now=timezone.now()).describe()

    @admin.display(description="Lag")
    def lag(self, obj: DeviceIntegration) -> SafeString:
        lag = lag_of(obj, now=timezone.now())
        # Two badges: the pull cursor's age, then the newest reading's (each says so on hover).
        return format_html(
            "{}<br>{}",
            badge(lag.cursor.text, lag.cursor.state, title=lag.cursor.title),
            badge(lag.newest.text, lag.newest.state, title=lag.newest.title),
        )

    @admin.display(description="Readings")
    def readings_24h(self, obj: DeviceIntegration) -> SafeString:
        push = getattr(obj, "readings_push_24h", 0)
        pull = getattr(obj, "readings_pull_24h", 0) + getattr(obj, "readings_backfill_24h", 0)
        lag = lag_of(obj, now=timezone.now())
        return format_html(
            '<span title="stored in the last 24 h">push {} / pull {}</span>'
            '<div class="help" title="{} readings timed in the last hour; {}">{} · {}</div>',
            f"{push:,}",
            f"{pull:,}",
            lag.rate_text,
            lag.silent_text,
            lag.rate_text,
            lag.silent_short,
        )

    @admin.display(description="Last error")
    def last_error(self, obj: DeviceIntegration) -> SafeString | str:
        error = obj.sync_error.strip()
        if not error:
            return "-"
        return truncated(error.splitlines()[0], chars=40, title=error)

    # --- actions ---------------------------------------------------------------------------------

    def has_run_sync_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Runs, backfills, reconciliation and connection tests: the `run_sync` permission
        ("gsync operators" have it), not merely change."""
        return request.user.has_perm("integrations.run_sync")

    @admin.action(description="Sync now", permissions=["run_sync"])
    def sync_now(self, request: HttpRequest, queryset: QuerySet[DeviceIntegration]) -> None:
        for integration in queryset:
            queued_at = timezone.now()
            if enqueue_sync(integration, trigger=ActivityLog.Trigger.ADMIN):
                link = queued_entry_link(integration, activity_types=SYNC_ENTRIES, since=queued_at)
                self.message_user(
                    request,
                    format_html(
                        "Sync of “{}” queued: a worker starts it at once (interval and time "
                        "window ignored). {}",
                        integration,
                        link,
                    ),
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    f"“{integration}” already has a sync queued or running; nothing added.",
                    messages.WARNING,
                )

    @admin.action(description="Verify completeness", permissions=["run_sync"])
    def verify_completeness(
        self, request: HttpRequest, queryset: QuerySet[DeviceIntegration]
    ) -> None:
        for integration in queryset:
            queued_at = timezone.now()
            if enqueue_reconcile(integration, trigger=ActivityLog.Trigger.ADMIN):
                link = queued_entry_link(
                    integration, activity_types=RECONCILE_ENTRIES, since=queued_at
                )
                self.message_user(
                    request,
                    format_html(
                        "Reconcile of “{}” queued: a worker compares Golioth's readings per "
                        "device and hour with gsync's and re-reads what is missing. {}",
                        integration,
                        link,
                    ),
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    f"“{integration}” already has a run queued or running; nothing added.",
                    messages.WARNING,
                )

    @admin.action(description="Test connection", permissions=["run_sync"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet[DeviceIntegration]) -> None:
        for integration in queryset:
            entry = test_connection(integration, trigger=ActivityLog.Trigger.ADMIN)
            if entry.status == ActivityLog.Status.SUCCESS:
                message = format_html(
                    "“{}”: {} ({}).", integration, entry.message, entry_link(entry)
                )
                self.message_user(request, message, messages.SUCCESS)
            else:
                message = format_html(
                    "“{}”: connection test failed: {} ({}).",
                    integration,
                    entry.error_message,
                    entry_link(entry),
                )
                self.message_user(request, message, messages.ERROR)

    @admin.action(description="Backfill…", permissions=["run_sync"])
    def backfill(
        self, request: HttpRequest, queryset: QuerySet[DeviceIntegration]
    ) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Select one integration to backfill.", messages.WARNING)
            return None
        url = reverse("admin:integrations_deviceintegration_backfill", args=[queryset.get().pk])
        return HttpResponseRedirect(url)

    @admin.action(description="Pause scheduled sync", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[DeviceIntegration]) -> None:
        self._set_status(request, queryset, Status.PAUSED, "Paused")

    @admin.action(description="Resume scheduled sync", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[DeviceIntegration]) -> None:
        self._set_status(request, queryset, Status.ACTIVE, "Resumed")

    def _set_status(
        self, request: HttpRequest, queryset: QuerySet[DeviceIntegration], status: str, verb: str
    ) -> None:
        changed: list[tuple[str, SafeString]] = []
        for integration in queryset.exclude(status=status):
            fields: dict[str, Any] = {"status": status}
            if status == Status.ACTIVE:
                # Resuming after "stopped after N failures" starts the count again.
                fields["consecutive_failures"] = 0
            DeviceIntegration.objects.filter(pk=integration.pk).update(**fields)
            entry = ActivityLog.objects.log(
                integration,
                activity_type=ActivityLog.ActivityType.STATUS_CHANGED,
                status=ActivityLog.Status.SUCCESS,
                trigger=ActivityLog.Trigger.ADMIN,
                message=f"{verb} by {request.user.get_username()} "
                f"(was {integration.get_status_display().lower()}).",
            )
            changed.append((integration.name, entry_link(entry)))
        if changed:
            names = format_html_join(", ", "{} ({})", changed)
            self.message_user(request, format_html("{}: {}.", verb, names), messages.SUCCESS)
        else:
            self.message_user(request, f"Nothing to do: already {status}.", messages.INFO)

    # --- the backfill form -----------------------------------------------------------------------

    def get_urls(self) -> list:
        backfill = path(
            "<int:object_id>/backfill/",
            self.admin_site.admin_view(self.backfill_view),
            name="integrations_deviceintegration_backfill",
        )
        act = path(
            "<int:object_id>/act/",
            self.admin_site.admin_view(self.panel_action_view),
            name="integrations_deviceintegration_act",
        )
        return [backfill, act, *super().get_urls()]

    # --- the integration page's buttons ----------------------------------------------------------

    def panel_buttons(self, request: HttpRequest, obj: DeviceIntegration) -> list[tuple[str, str]]:
        """(action, label) of the buttons the user may press on `obj`'s page: the changelist's
        actions they hold the permission for, Pause or Resume as the status says."""
        hidden = {"pause"} if obj.status == Status.PAUSED else {"resume"}
        if obj.status == Status.ERROR:
            hidden = set()
        buttons = []
        for name, action in self.get_actions(request).items():
            if name in ACTIONS and name not in hidden and action is not None:
                buttons.append((name, str(action[2])))
        return sorted(buttons, key=lambda button: ACTIONS.index(button[0]))

    def panel_action_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """POST `action=<name>`: the changelist's action on this one integration, then back to
        its page with the action's message (Backfill… goes on to its form)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        integration = get_object_or_404(DeviceIntegration, pk=object_id)
        page = reverse("admin:integrations_deviceintegration_change", args=[integration.pk])
        name = request.POST.get("action", "")
        action = self.get_actions(request).get(name) if name in ACTIONS else None
        if action is None:
            self.message_user(
                request, f"No action “{name[:40]}” you may run on this page.", messages.ERROR
            )
            return HttpResponseRedirect(page)
        run = action[0]
        response = run(self, request, DeviceIntegration.objects.filter(pk=integration.pk))
        return response if isinstance(response, HttpResponse) else HttpResponseRedirect(page)

    def backfill_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not self.has_run_sync_permission(request):
            return HttpResponse("You may not backfill integrations.", status=403)
        integration = get_object_or_404(DeviceIntegration, pk=object_id)
        now = timezone.localtime().replace(second=0, microsecond=0)
        form = BackfillForm(
            request.POST or None, initial={"since": now - timedelta(days=1), "until": now}
        )
        if request.method == "POST" and form.is_valid():
            since, until = form.cleaned_data["since"], form.cleaned_data["until"]
            queued_at = timezone.now()
            if enqueue_backfill(integration, since=since, until=until):
                link = queued_entry_link(
                    integration, activity_types=BACKFILL_ENTRIES, since=queued_at
                )
                self.message_user(
                    request,
                    format_html(
                        "Backfill of “{}” from {} to {} queued; it runs in a worker and leaves "
                        "the live cursor where it is. {}",
                        integration,
                        f"{since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC",
                        f"{until.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC",
                        link,
                    ),
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse("admin:integrations_deviceintegration_changelist")
                )
            form.add_error(
                None,
                "A sync of this integration is queued or running; try again when it has finished.",
            )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Backfill {integration}",
            "integration": integration,
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/integrations/backfill.html", context)
