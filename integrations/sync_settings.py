"""SyncSettings: the one typed view of `DeviceIntegration.settings`.

The JSON keeps the camelCase keys of the system gsync replaces (operators query them with SQL);
no other module reads raw keys. `SyncSettings.from_json` validates and raises `SettingsError` with
one message per field, keyed by the JSON path (`timeWindow.start`), which the admin form and the
`integration` command map back to their own fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any

from integrations.device_filter import DeviceFilter, parse_device_filter
from integrations.golioth.paths import LOGS_PATH, pattern_matches
from integrations.setting_table import DEFAULTS, SETTINGS
from integrations.time_window import TimeWindow, parse_time_window


class SettingsError(ValueError):
    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{key}: {msg}" for key, msg in errors.items()))


@dataclass(frozen=True)
class SyncSettings:
    """The typed settings. Scalar defaults come from SETTINGS (checked below: every row is an
    attribute here and every scalar attribute a row); the window and the filter are objects."""

    sync_enabled: bool = DEFAULTS["sync_enabled"]
    sync_interval_seconds: int = DEFAULTS["sync_interval_seconds"]
    time_window: TimeWindow | None = None
    device_filter: DeviceFilter | None = None
    overlap_seconds: int = DEFAULTS["overlap_seconds"]
    settle_seconds: int = DEFAULTS["settle_seconds"]
    max_requests_per_second: float = DEFAULTS["max_requests_per_second"]
    backfill_from: datetime | None = DEFAULTS["backfill_from"]
    max_consecutive_failures: int = DEFAULTS["max_consecutive_failures"]
    time_tolerance_seconds: int = DEFAULTS["time_tolerance_seconds"]
    offline_after_minutes: int = DEFAULTS["offline_after_minutes"]
    payloads_nested_under_path: bool = DEFAULTS["payloads_nested_under_path"]
    webhook_creates_devices: bool = DEFAULTS["webhook_creates_devices"]
    webhook_queued: bool = DEFAULTS["webhook_queued"]
    reconcile_lookback_hours: int = DEFAULTS["reconcile_lookback_hours"]
    reconcile_interval_minutes: int = DEFAULTS["reconcile_interval_minutes"]
    # Golioth path filter patterns (integrations.golioth.paths); None: every path but logs.
    mirrored_paths: tuple[str, ...] | None = DEFAULTS["mirrored_paths"]
    # Days readings are kept (telemetry.retention); None: forever.
    telemetry_retention_days: int | None = DEFAULTS["telemetry_retention_days"]
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def offline_after(self) -> timedelta:
        return timedelta(minutes=self.offline_after_minutes)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> SyncSettings:
        return _parse(data or {})

    def to_json(self) -> dict[str, Any]:
        data = dict(self.extra)
        data.update({s.key: s.dump(getattr(self, s.attr)) for s in SETTINGS})
        data["timeWindow"] = self.time_window.to_json() if self.time_window else None
        data["deviceFilter"] = self.device_filter.to_json() if self.device_filter else None
        return data

    def replace(self, **changes: Any) -> SyncSettings:
        return replace(self, **changes)

    def in_window(self, moment: datetime) -> bool:
        return self.time_window is None or self.time_window.contains(moment)

    def mirrors_path(self, path: str) -> bool:
        """Does this integration keep readings sent to stream path `path` (`sensor`, `/env/t`)?

        No path ("") is mirrored: a delivery that names none cannot be sorted, and Golioth only
        delivers what a pipeline's filter matched.
        """
        if not path.strip("/"):
            return True
        if self.mirrored_paths is None:
            return not pattern_matches(LOGS_PATH, path)
        return any(pattern_matches(pattern, path) for pattern in self.mirrored_paths)


KNOWN_KEYS = frozenset(SyncSettings().to_json())
_OBJECTS = {"time_window", "device_filter", "extra"}
if {f.name for f in fields(SyncSettings)} - _OBJECTS != set(DEFAULTS):
    raise TypeError("SyncSettings' scalar attributes and SETTINGS must name the same settings")


# --- parsing and validation ----------------------------------------------------------------------


def _parse(data: dict[str, Any]) -> SyncSettings:
    if not isinstance(data, dict):
        raise SettingsError({"settings": "must be a JSON object"})
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = data.get(setting.key)
        if raw is None:
            continue
        try:
            values[setting.attr] = setting.parse(raw)
        except ValueError as exc:
            errors.setdefault(setting.key, str(exc))
    values["time_window"] = parse_time_window(data.get("timeWindow"), errors)
    values["device_filter"] = parse_device_filter(data.get("deviceFilter"), errors)
    values["extra"] = {k: v for k, v in data.items() if k not in KNOWN_KEYS}
    if problem := _retention_problem(values):
        errors.setdefault("telemetryRetentionDays", problem)
    if errors:
        raise SettingsError(dict(errors))
    return SyncSettings(**values)


def _retention_problem(values: dict[str, Any]) -> str | None:
    """Readings must outlive the windows the pull and the reconcile re-read (scheduled or not: the
    admin's "Verify completeness" reads the lookback too), or each run would fetch again what the
    prune deleted, and the next prune delete it again."""
    days = values.get("telemetry_retention_days")
    if days is None:
        return None
    lookback_hours = values.get("reconcile_lookback_hours", DEFAULTS["reconcile_lookback_hours"])
    overlap = values.get("overlap_seconds", DEFAULTS["overlap_seconds"])
    reread = max(timedelta(hours=lookback_hours), timedelta(seconds=overlap))
    if timedelta(days=days) > reread:
        return None
    what = "the reconcile lookback" if lookback_hours * 3600 >= overlap else "the overlap"
    return (
        f"must be longer than {what} ({_days(reread)}): every run would fetch again what the "
        f"prune deleted (got {days})"
    )


def _days(span: timedelta) -> str:
    days = span / timedelta(days=1)
    return f"{days:g} day{'s' if days != 1 else ''}"
