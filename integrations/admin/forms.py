"""IntegrationForm: the one place that maps form fields to `DeviceIntegration.settings`.

The admin and `manage.py integration` both bind this form, so they refuse the same values with the
same words. The settings are checked by `SyncSettings.from_json`; each of its error keys (a JSON
path such as `timeWindow.end`) maps back to a form field through SETTINGS_FIELDS.
"""

from __future__ import annotations

import functools
import re
from typing import Any, cast
from zoneinfo import available_timezones

from django import forms
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from integrations import crypto
from integrations.device_filter import DeviceFilter
from integrations.golioth.api_hosts import ApiHostError, ApiHostPolicy
from integrations.models import DeviceIntegration
from integrations.setting_table import SETTINGS, Setting
from integrations.settings_changes import snapshot
from integrations.sync_settings import SettingsError, SyncSettings
from integrations.time_window import DAY_NAMES

# settings JSON path -> form field: reading, writing and error mapping all go through it.
SETTINGS_FIELDS = {
    **{setting.key: setting.attr for setting in SETTINGS},
    "timeWindow.start": "window_start",
    "timeWindow.end": "window_end",
    "timeWindow.timezone": "window_timezone",
    "timeWindow.days": "window_days",
    "deviceFilter.tags": "filter_tags",
    "deviceFilter.tagMatch": "filter_tag_match",
    "deviceFilter.deviceIds": "filter_device_ids",
    "deviceFilter.namePattern": "filter_name_pattern",
    "deviceFilter.cohortIds": "filter_cohort_ids",
    "deviceFilter.blueprintIds": "filter_blueprint_ids",
    "deviceFilter.enabledOnly": "filter_enabled_only",
    "deviceFilter.reportedWithinHours": "filter_reported_within_hours",
}
# An error about a whole object lands on the field that switches it on (None: the whole form).
OBJECT_FIELDS = {"timeWindow": "window_enabled", "deviceFilter": None, "settings": None}
NO_WINDOW = {"start": "", "end": "", "timezone": "UTC", "days": list(range(7))}
# Fields that say where the API key goes: changing one needs the key again.
KEY_DESTINATION = {"base_url": "API base URL", "project_id": "project"}
_LIST_SEPARATORS = re.compile(r"[\s,]+")
# A password box is never filled in again: after an error, the typed key is gone from the page.
RE_ENTER_KEY = "Re-enter the API key: it is not shown again for safety."


def field_for_path(path: str) -> str | None:
    return SETTINGS_FIELDS.get(path) or OBJECT_FIELDS.get(path.split(".")[0])


def sentence(message: str) -> str:
    """SettingsError messages read as fragments ("must be ..."); a field error is a sentence."""
    message = message[:1].upper() + message[1:]
    return message if message.endswith(".") else f"{message}."


def settings_initial(raw: dict[str, Any] | None) -> dict[str, Any]:
    """Form field values for stored settings (defaults where the stored JSON is invalid)."""
    try:
        sync = SyncSettings.from_json(raw)
    except SettingsError:
        sync = SyncSettings()
    data = sync.to_json()
    initial: dict[str, Any] = {"window_enabled": data["timeWindow"] is not None}
    data["timeWindow"] = data["timeWindow"] or NO_WINDOW
    data["deviceFilter"] = data["deviceFilter"] or DeviceFilter().to_json()
    for path, name in SETTINGS_FIELDS.items():
        head, _, key = path.partition(".")
        initial[name] = data[head][key] if key else data[head]
    initial["backfill_from"] = sync.backfill_from
    return initial


def build_settings(cleaned: dict[str, Any], *, base: dict[str, Any]) -> dict[str, Any]:
    """The settings JSON for cleaned form values, over `base`: keys the form lacks are kept."""
    data = dict(base)
    objects: dict[str, dict[str, Any]] = {"timeWindow": {}, "deviceFilter": {}}
    for path, name in SETTINGS_FIELDS.items():
        if name not in cleaned:
            continue  # the field has its own error already
        value = cleaned[name]
        if name == "backfill_from" and value is not None:
            value = value.isoformat()
        head, _, key = path.partition(".")
        if key:
            objects[head][key] = value
        else:
            data[head] = value
    data["timeWindow"] = objects["timeWindow"] if cleaned.get("window_enabled") else None
    device_filter = objects["deviceFilter"]
    if not device_filter.get("tags"):
        device_filter["tagMatch"] = "all"  # meaningless without tags; keeps an empty filter null
    data["deviceFilter"] = device_filter
    return data


@functools.cache
def known_timezones() -> list[str]:
    return sorted(available_timezones() | {"UTC"})


class TimezoneInput(forms.TextInput):
    """A text box suggesting the known zones: typing "Berl" beats scrolling a 600-entry select."""

    def __init__(self, attrs: dict[str, Any] | None = None):
        super().__init__(attrs={"list": "gsync-timezones", "autocomplete": "off", **(attrs or {})})

    def render(self, name: str, value: Any, attrs: Any = None, renderer: Any = None) -> SafeString:
        box = super().render(name, value, attrs, renderer)
        options = format_html_join("", '<option value="{}">', ((z,) for z in known_timezones()))
        return format_html('{}<datalist id="gsync-timezones">{}</datalist>', box, options)


class IdentifierListField(forms.CharField):
    """Golioth ids or tags, separated by commas, spaces or new lines; cleans to a list."""

    widget = forms.Textarea(attrs={"rows": 2, "cols": 60})

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(value) if isinstance(value, list | tuple) else value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(self.prepare_value(value)) or ""
        return list(dict.fromkeys(token for token in _LIST_SEPARATORS.split(text) if token))


class PathPatternsField(IdentifierListField):
    """Golioth path filter patterns (/sensor, /env/*); blank cleans to None: every path but logs."""

    def to_python(self, value: Any) -> list[str] | None:  # type: ignore[override]
        return super().to_python(value) or None


class WeekdaysField(forms.TypedMultipleChoiceField):
    """Days as the settings store them, 0 = Sunday ... 6 = Saturday; names (mon, Tuesday) too."""

    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs: Any):
        choices = [(number, name) for number, name in enumerate(DAY_NAMES)]
        super().__init__(choices=choices, coerce=int, **kwargs)

    def to_python(self, value: Any) -> list[str]:
        return [_day_number(token) for token in super().to_python(value)]


def _day_number(token: str) -> str:
    word = token.strip().lower()
    if len(word) >= 2 and not word.isdigit():
        for number, name in enumerate(DAY_NAMES):
            if name.lower().startswith(word):
                return str(number)
    return token.strip()


def _secret_label(secret: dict[str, str]) -> str:
    return f"••••{secret.get('hint', '')} (added {secret_added(secret)})"


def secret_added(secret: dict[str, str]) -> str:
    """When a webhook secret was added, to the second (its `created` is ISO 8601 UTC)."""
    return secret.get("created", "")[:19].replace("T", " ") + " UTC"


def setting_field(setting: Setting) -> forms.Field:
    """The form field of one row of the settings table; the settings validate its value."""
    label, help_text = setting.label, setting.help
    if setting.kind == "bool":
        return forms.BooleanField(required=False, label=label, help_text=help_text)
    if setting.kind == "int":
        # A setting whose default is None (blank) may be left blank.
        required = setting.default is not None
        return forms.IntegerField(required=required, label=label, help_text=help_text)
    if setting.kind == "float":
        return forms.FloatField(label=label, help_text=help_text)
    if setting.kind == "datetime":
        return forms.DateTimeField(required=False, label=label, help_text=help_text)
    if setting.kind == "paths":
        return PathPatternsField(label=label, help_text=help_text)
    raise ValueError(f"no form field for settings of kind {setting.kind!r}")


class SettingFields:
    """A form base whose declared fields are the settings table's (Django's form metaclass
    collects `declared_fields` from every base)."""

    declared_fields = {setting.attr: setting_field(setting) for setting in SETTINGS}


class IntegrationForm(SettingFields, forms.ModelForm):
    base_url = forms.URLField(
        label="API base URL",
        # A declared field loses the model's default: Golioth's API, prefilled for a new one.
        initial=DeviceIntegration._meta.get_field("base_url").default,
        max_length=200,
        assume_scheme="https",
        help_text="https://api.golioth.io unless you use a staging or self-hosted API (its host "
        "must be in GSYNC_API_HOSTS). Changing it, or the project, needs the API key again.",
    )
    api_key = forms.CharField(
        label="API key",
        required=False,
        max_length=500,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    window_enabled = forms.BooleanField(required=False, label="Only sync within a time window")
    window_start = forms.CharField(
        required=False,
        label="Window start",
        widget=forms.TextInput(attrs={"placeholder": "HH:MM", "size": 6}),
        help_text="HH:MM. A start after the end is an overnight window (22:00 to 06:00).",
    )
    window_end = forms.CharField(
        required=False,
        label="Window end",
        widget=forms.TextInput(attrs={"placeholder": "HH:MM", "size": 6}),
    )
    window_timezone = forms.CharField(
        required=False, label="Time zone", widget=TimezoneInput(), help_text="e.g. Europe/Berlin"
    )
    window_days = WeekdaysField(
        required=False,
        label="Days",
        help_text="An overnight window belongs to the day it opens: Friday 22:00-06:00 runs into "
        "Saturday morning.",
    )
    filter_tags = IdentifierListField(label="Tags", help_text="Golioth tag ids.")
    filter_tag_match = forms.ChoiceField(
        label="Tag match",
        required=False,
        choices=[("all", "Device has all the tags"), ("any", "Device has any of the tags")],
    )
    filter_device_ids = IdentifierListField(label="Device ids", help_text="Golioth device ids.")
    filter_name_pattern = forms.CharField(
        label="Name pattern", required=False, help_text="A glob: sensor-*, gw-[0-9]?"
    )
    filter_cohort_ids = IdentifierListField(label="Cohort ids")
    filter_blueprint_ids = IdentifierListField(label="Blueprint ids")
    filter_enabled_only = forms.BooleanField(label="Enabled devices only", required=False)
    filter_reported_within_hours = forms.IntegerField(
        label="Reported within (hours)",
        required=False,
        help_text="Only devices that reported this recently; blank: any.",
    )
    generate_webhook_secret = forms.BooleanField(
        required=False,
        label="Generate a new webhook secret",
        help_text="Shown once, after saving. The current secrets stay active until removed.",
    )
    remove_webhook_secrets = forms.MultipleChoiceField(
        required=False, label="Remove webhook secrets", widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = DeviceIntegration
        fields = ["name", "status", "project_id", "base_url", "webhook_enabled"]
        help_texts = {
            "webhook_enabled": "Accept readings pushed by a Golioth pipeline.",
        }

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Taken before binding changes the instance: what the change log compares against.
        self.before = snapshot(self.instance) if self.instance.pk else None
        self.generated_secret = ""
        self.settings_json: dict[str, Any] = {}
        for name, value in settings_initial(self.instance.settings).items():
            self.initial.setdefault(name, value)
        self._describe_secrets()

    def _describe_secrets(self) -> None:
        if self.instance.api_key_encrypted:
            self.fields[
                "api_key"
            ].help_text = (
                f"Write-only. Current key: {self.instance.api_key_display}. Leave blank to keep it."
            )
        else:
            self.fields["api_key"].help_text = (
                "The Golioth project API key. Stored encrypted; only its last four characters "
                "are ever shown."
            )
        secrets = self.instance.webhook_secrets
        remove = cast(forms.MultipleChoiceField, self.fields["remove_webhook_secrets"])
        remove.choices = [(s["id"], _secret_label(s)) for s in secrets]
        if not secrets:
            self.fields["remove_webhook_secrets"].help_text = "No active secrets."

    def full_clean(self) -> None:
        super().full_clean()
        self._ask_for_the_key_again()

    def _ask_for_the_key_again(self) -> None:
        """The form goes back with errors and an empty key box: say so on the box, or staff
        save the next attempt without the key they typed and never notice (issue 12)."""
        typed = self.is_bound and str(self.data.get(self.add_prefix("api_key"), "")).strip()
        if typed and self.errors:
            note = format_html("<strong>{}</strong>", RE_ENTER_KEY)
            # The bound field copied the help text when cleaning made it: set both.
            self.fields["api_key"].help_text = self["api_key"].help_text = note

    def clean_api_key(self) -> str:
        key = self.cleaned_data.get("api_key", "")
        if not key and not self.instance.api_key_encrypted:
            raise forms.ValidationError(
                "Enter the project's API key (Golioth console: Project settings > API keys)."
            )
        if any(char.isspace() for char in key):
            raise forms.ValidationError("An API key has no spaces; check what was pasted.")
        if key:
            try:
                crypto.check_keys()
            except crypto.EncryptionKeyError as exc:
                raise forms.ValidationError(f"gsync cannot store the key: {exc}") from None
        return key

    def clean_base_url(self) -> str:
        url = self.cleaned_data["base_url"]
        try:
            ApiHostPolicy.from_settings().check_addresses(url)
        except ApiHostError as exc:
            raise forms.ValidationError(sentence(str(exc))) from None
        except (OSError, UnicodeError):
            pass  # no DNS answer now (offline?): the client checks again before every call
        return url

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        self._clean_key_destination(cleaned)
        self._clean_settings(cleaned)
        self._clean_webhook(cleaned)
        return cleaned

    def _clean_key_destination(self, cleaned: dict[str, Any]) -> None:
        """The key goes only where it was saved for: moving it needs the key again, so a user
        who may edit an integration cannot send its key to a host or project of their own."""
        if (
            not self.instance.api_key_encrypted
            or cleaned.get("api_key")
            or "api_key" in self.errors
        ):
            return
        moved = [label for name, label in KEY_DESTINATION.items() if name in self.changed_data]
        if moved:
            self.add_error(
                "api_key",
                f"You changed the {' and the '.join(moved)}: enter the API key again. gsync "
                "sends a key only to the host and project it was saved for.",
            )

    def _clean_settings(self, cleaned: dict[str, Any]) -> None:
        data = build_settings(cleaned, base=self.instance.settings or {})
        try:
            self.settings_json = SyncSettings.from_json(data).to_json()
        except SettingsError as exc:
            for path, message in exc.errors.items():
                name = field_for_path(path)
                if name is None or name not in self.errors:
                    self.add_error(name, sentence(message))

    def _clean_webhook(self, cleaned: dict[str, Any]) -> None:
        if not cleaned.get("webhook_enabled") or cleaned.get("generate_webhook_secret"):
            return
        removed = set(cleaned.get("remove_webhook_secrets") or ())
        if all(secret["id"] in removed for secret in self.instance.webhook_secrets):
            self.add_error(
                "webhook_enabled",
                "Webhooks need an active secret: tick “Generate a new webhook secret”, "
                "or leave webhooks off.",
            )

    def save(self, commit: bool = True) -> DeviceIntegration:
        """Also sets the settings JSON, the API key and the secrets; a generated secret is kept
        in `generated_secret` for the caller to show once."""
        integration = super().save(commit=False)
        integration.settings = self.settings_json
        if self.cleaned_data.get("api_key"):
            integration.set_api_key(self.cleaned_data["api_key"])
        integration.remove_webhook_secrets(
            list(self.cleaned_data.get("remove_webhook_secrets", ()))
        )
        if self.cleaned_data.get("generate_webhook_secret"):
            self.generated_secret = integration.add_webhook_secret()
        if commit:
            integration.save()
        return integration
