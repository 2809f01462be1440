"""`manage.py integration list | show NAME [--json|--pipeline] | create NAME ... | update NAME ...`

create and update bind the admin's IntegrationForm, so every setting has a flag named after its
form field (--sync-interval-seconds, --window-start, --filter-tags, ...), validated the same way,
refused with the same messages. The API key is never a flag value (it would land in shell
history): it comes from an environment variable (GOLIOTH_API_KEY by default) or stdin.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, cast

from django import forms
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone
from django.utils.html import strip_tags

from integrations import crypto
from integrations.admin.forms import IntegrationForm
from integrations.due import due
from integrations.models import ActivityLog, DeviceIntegration
from integrations.pull.retention import reaches_past_retention
from integrations.push.pipeline import pipeline_yaml
from integrations.settings_changes import log_settings_change

API_KEY_ENV = "GOLIOTH_API_KEY"
# Form fields that are not plain flags: the key has its own options, secrets act once.
NOT_SETTINGS = ("api_key", "generate_webhook_secret", "remove_webhook_secrets")
FILTER_CLEARED = {
    "filter_tags": "",
    "filter_tag_match": "all",
    "filter_device_ids": "",
    "filter_name_pattern": "",
    "filter_cohort_ids": "",
    "filter_blueprint_ids": "",
    "filter_enabled_only": False,
    "filter_reported_within_hours": None,
}
LIST_METAVARS = {"window_days": "Mon,Tue,...|1,2,...", "remove_webhook_secrets": "ID,ID"}
_LIST = re.compile(r"[\s,]+")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_form_flags(parser: CommandParser, *, skip: tuple[str, ...] = ()) -> None:
    """One flag per IntegrationForm field: --no-X turns a yes/no setting off, lists are A,B."""
    for name, field in IntegrationForm.base_fields.items():
        if name in skip or name == "api_key":
            continue
        help_text = strip_tags(str(field.help_text or field.label or "")).replace("%", "%%")
        if name == "generate_webhook_secret":
            parser.add_argument(flag(name), action="store_true", default=None, help=help_text)
        elif isinstance(field, forms.BooleanField):
            parser.add_argument(
                flag(name), action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        elif isinstance(field, forms.MultipleChoiceField):
            parser.add_argument(flag(name), metavar=LIST_METAVARS[name], help=help_text)
        elif isinstance(field, forms.ChoiceField) and field.choices:
            choices = "|".join(str(value) for value, _ in cast(list, field.choices) if value)
            parser.add_argument(flag(name), metavar=choices, help=help_text)
        else:
            parser.add_argument(flag(name), metavar="VALUE", help=help_text)
    key = parser.add_mutually_exclusive_group()
    key.add_argument(
        "--api-key-env",
        metavar="VAR",
        nargs="?",
        const=API_KEY_ENV,
        help=f"read the API key from this environment variable (default {API_KEY_ENV}; create "
        f"reads {API_KEY_ENV} when no key option is given)",
    )
    key.add_argument("--api-key-stdin", action="store_true", help="read the API key from stdin")
    parser.add_argument(
        "--no-device-filter", action="store_true", help="clear every device filter field"
    )


def current_data(instance: DeviceIntegration) -> dict[str, Any]:
    """The form's data as the admin would post it for `instance` unchanged."""
    form = IntegrationForm(instance=instance)
    return {
        name: form.initial.get(name, field.initial)
        for name, field in form.fields.items()
        if name not in NOT_SETTINGS
    }


def flag_values(options: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, field in IntegrationForm.base_fields.items():
        value = options.get(name)
        if value is None or name == "api_key":
            continue
        if isinstance(field, forms.MultipleChoiceField):
            value = [token for token in _LIST.split(value) if token]
        values[name] = value
    if options.get("no_device_filter"):
        values = {**FILTER_CLEARED, **values}
    window_given = any(name.startswith("window_") for name in values)
    if window_given and "window_enabled" not in values:
        values["window_enabled"] = True
    return values


def error_lines(form: IntegrationForm, *, creating: bool) -> list[str]:
    labels = {"__all__": "error", "api_key": f"{API_KEY_ENV} / --api-key-stdin"}
    if creating:
        labels["name"] = "NAME"
    return [
        f"{labels.get(name, flag(name))}: {message}"
        for name, messages in form.errors.items()
        for message in messages
    ]


def integration_json(integration: DeviceIntegration) -> dict[str, Any]:
    """Everything about `integration` but its secrets (the API key shows as ••••last4)."""

    def iso(value: Any) -> str | None:
        return value.isoformat() if value else None

    next_run = due(integration, now=timezone.now())
    return {
        "name": integration.name,
        "integration_type": integration.integration_type,
        "status": integration.status,
        "project_id": integration.project_id,
        "base_url": integration.base_url,
        "api_key": integration.api_key_display,
        "settings": integration.settings,
        "webhook": {
            "url": integration.webhook_url,
            "enabled": integration.webhook_enabled,
            "secrets": [
                {key: secret.get(key) for key in ("id", "hint", "created")}
                for secret in integration.webhook_secrets
            ],
            "rejected_count": integration.webhook_rejected_count,
        },
        "sync_state": {
            "last_sync_at": iso(integration.last_sync_at),
            "last_sync_status": integration.last_sync_status,
            "sync_error": integration.sync_error,
            "sync_cursor": iso(integration.sync_cursor),
            "consecutive_failures": integration.consecutive_failures,
            "locked_until": iso(integration.locked_until),
            "locked_by": integration.locked_by,
            "next_run_at": iso(next_run.next_at),
            "next_run": next_run.describe(),
        },
        "created_at": iso(integration.created_at),
        "updated_at": iso(integration.updated_at),
    }


class Command(BaseCommand):
    help = (
        "List, show, create and update Golioth integrations: the admin's form from the shell. "
        "`integration create NAME --help` lists a flag for every setting."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        actions.add_parser("list", help="every integration, one line each")
        show = actions.add_parser("show", help="one integration (secrets never shown)")
        show.add_argument("integration_name", metavar="NAME")
        show.add_argument("--json", action="store_true", help="as JSON, incl. the webhook URL")
        show.add_argument(
            "--pipeline", action="store_true", help="only the Golioth pipeline YAML to paste"
        )
        create = actions.add_parser("create", help="a new integration (API key: see below)")
        create.add_argument("integration_name", metavar="NAME")
        add_form_flags(create, skip=("name",))
        update = actions.add_parser("update", help="change the flags given, keep the rest")
        update.add_argument("integration_name", metavar="NAME")
        add_form_flags(update)

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "list":
            self._list()
        elif action == "show":
            integration = self._get(options["integration_name"])
            if options["pipeline"]:
                self.stdout.write(pipeline_yaml(integration), ending="")
            else:
                self._show(integration, as_json=options["json"])
        else:
            self._save(options, creating=action == "create")

    def _get(self, name: str) -> DeviceIntegration:
        try:
            return DeviceIntegration.objects.get(name=name)
        except DeviceIntegration.DoesNotExist:
            known = ", ".join(DeviceIntegration.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"No integration named {name!r} (known: {known}).") from None

    def _list(self) -> None:
        integrations = list(DeviceIntegration.objects.order_by("name"))
        if not integrations:
            self.stdout.write("No integrations yet: `manage.py integration create NAME ...`.")
            return
        rows = [("NAME", "STATUS", "PROJECT", "SYNC", "INTERVAL", "LAST SYNC", "WEBHOOK")]
        for integration in integrations:
            sync = integration.settings or {}
            rows.append(
                (
                    integration.name,
                    integration.status,
                    integration.project_id,
                    "on" if sync.get("syncEnabled", True) else "off",
                    f"{sync.get('syncIntervalSeconds', 300)}s",
                    f"{integration.last_sync_at:%Y-%m-%d %H:%M} {integration.last_sync_status}"
                    if integration.last_sync_at
                    else "never",
                    "on" if integration.webhook_enabled else "off",
                )
            )
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write(
                "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
            )

    def _show(self, integration: DeviceIntegration, *, as_json: bool) -> None:
        data = integration_json(integration)
        if as_json:
            self.stdout.write(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))
            return
        for key, value in data.items():
            if isinstance(value, dict):
                self.stdout.write(f"{key}:")
                for inner, item in value.items():
                    self.stdout.write(f"  {inner}: {json.dumps(item)}")
            else:
                self.stdout.write(f"{key}: {value if value is not None else '-'}")
        self.stdout.write("golioth pipelines (also: show NAME --pipeline):")
        self.stdout.write(pipeline_yaml(integration), ending="")

    def _save(self, options: dict[str, Any], *, creating: bool) -> None:
        name = options["integration_name"]
        instance = DeviceIntegration() if creating else self._get(name)
        data = current_data(instance)
        if creating:
            data["name"] = name
        data.update(flag_values(options))
        data["api_key"] = self._api_key(options, creating=creating)
        if data["api_key"]:
            try:
                crypto.check_keys()
            except crypto.EncryptionKeyError as exc:
                raise CommandError(f"Nothing saved: {exc}") from None
        form = IntegrationForm(data=data, instance=instance)
        if not form.is_valid():
            lines = error_lines(form, creating=creating)
            raise CommandError("Nothing saved.\n" + "\n".join(lines))
        with transaction.atomic():
            integration = form.save()
            log_settings_change(integration, before=form.before, trigger=ActivityLog.Trigger.MANUAL)
        verb = "Created" if creating else "Updated"
        self.stdout.write(f"{verb} integration {integration.name!r}.")
        backfill_from = integration.sync_settings.backfill_from
        if backfill_from and options.get("backfill_from") is not None:
            what = "The first pull (backfillFrom)"
            if warning := reaches_past_retention(backfill_from, now=timezone.now(), what=what):
                self.stderr.write(f"Warning: {warning}")
        self.stdout.write(f"Webhook URL: {integration.webhook_url}")
        if form.generated_secret:
            self.stdout.write(f"New webhook secret (shown only this once): {form.generated_secret}")

    def _api_key(self, options: dict[str, Any], *, creating: bool) -> str:
        if options["api_key_stdin"]:
            key = (options.get("stdin") or sys.stdin).read().strip()
            if not key:
                raise CommandError("--api-key-stdin: nothing was read from stdin.")
            return key
        variable = options["api_key_env"] or (API_KEY_ENV if creating else None)
        if variable is None:
            return ""
        key = os.environ.get(variable, "").strip()
        if not key and options["api_key_env"]:
            raise CommandError(f"--api-key-env: the environment variable {variable} is empty.")
        return key
