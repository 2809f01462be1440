"""SyncSettings: the one typed view of `DeviceIntegration.settings`.

The JSON keeps the camelCase keys of the system gsync replaces (operators query them with SQL);
no other module reads raw keys. `SyncSettings.from_json` validates and raises `SettingsError` with
one message per field, keyed by the JSON path (`timeWindow.start`), which the admin form and the
`integration` command map back to their own fields.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from integrations.golioth.paths import LOGS_PATH, normalize_patterns, pattern_matches

# Days as the old system stored them (JavaScript's getDay): 0 = Sunday ... 6 = Saturday.
DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
TAG_MATCH_CHOICES = ("all", "any")
MIN_INTERVAL_SECONDS = 60
# A reconcile reads Golioth's counts over its lookback: a year is the most any plan keeps.
MAX_RECONCILE_LOOKBACK_HOURS = 366 * 24
MIN_RECONCILE_INTERVAL_MINUTES = 5


class SettingsError(ValueError):
    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{key}: {msg}" for key, msg in errors.items()))


@dataclass(frozen=True)
class TimeWindow:
    start: time
    end: time
    timezone: str = "UTC"
    days: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)

    @property
    def overnight(self) -> bool:
        return self.start > self.end

    def contains(self, moment: datetime) -> bool:
        """Is `moment` inside the window, in the window's own timezone?

        `start > end` is an overnight window; its day is the day it opened, so Friday 22:00-06:00
        covers Saturday 03:00. `start == end` is the whole day.
        """
        local = moment.astimezone(ZoneInfo(self.timezone))
        now, weekday = local.time(), _js_weekday(local)
        if self.start == self.end:
            return weekday in self.days
        if not self.overnight:
            return self.start <= now < self.end and weekday in self.days
        if now >= self.start:
            return weekday in self.days
        if now < self.end:
            return (weekday - 1) % 7 in self.days
        return False

    def next_opening(self, after: datetime) -> datetime | None:
        """The first moment at or after `after` when the window opens (None: it never does).

        A whole-day window (`start == end`) opens at midnight of each of its days.
        """
        zone = ZoneInfo(self.timezone)
        first_day = after.astimezone(zone).date()
        opens_at = self.start if self.start != self.end else time(0)
        for offset in range(8):
            day = first_day + timedelta(days=offset)
            if (day.weekday() + 1) % 7 not in self.days:
                continue
            opening = datetime.combine(day, opens_at, tzinfo=zone)
            if opening >= after:
                return opening
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
            "timezone": self.timezone,
            "days": list(self.days),
        }

    def describe(self) -> str:
        days = ", ".join(DAY_NAMES[d][:3] for d in self.days) if len(self.days) < 7 else "every day"
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.timezone}, {days}"


@dataclass(frozen=True)
class DeviceFilter:
    tags: tuple[str, ...] = ()
    tag_match: str = "all"
    device_ids: tuple[str, ...] = ()
    name_pattern: str = ""
    cohort_ids: tuple[str, ...] = ()
    blueprint_ids: tuple[str, ...] = ()
    enabled_only: bool = False
    reported_within_hours: int | None = None

    def matches(self, device: Any, *, now: datetime) -> bool:
        """`device` is anything with the attributes of telemetry.Device / payloads.DeviceRecord."""
        tags = set(device.tag_ids or ())
        if self.tags:
            wanted = set(self.tags)
            if self.tag_match == "all" and not wanted <= tags:
                return False
            if self.tag_match == "any" and not wanted & tags:
                return False
        if self.device_ids and device.external_id not in self.device_ids:
            return False
        if self.name_pattern and not fnmatch.fnmatchcase(device.name or "", self.name_pattern):
            return False
        if self.cohort_ids and device.cohort_id not in self.cohort_ids:
            return False
        if self.blueprint_ids and device.blueprint_id not in self.blueprint_ids:
            return False
        if self.enabled_only and not device.enabled:
            return False
        if self.reported_within_hours is not None:
            cutoff = now - timedelta(hours=self.reported_within_hours)
            if device.last_report is None or device.last_report < cutoff:
                return False
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "tags": list(self.tags),
            "tagMatch": self.tag_match,
            "deviceIds": list(self.device_ids),
            "namePattern": self.name_pattern,
            "cohortIds": list(self.cohort_ids),
            "blueprintIds": list(self.blueprint_ids),
            "enabledOnly": self.enabled_only,
            "reportedWithinHours": self.reported_within_hours,
        }

    @property
    def is_empty(self) -> bool:
        return self == DeviceFilter()


@dataclass(frozen=True)
class SyncSettings:
    sync_enabled: bool = True
    sync_interval_seconds: int = 300
    time_window: TimeWindow | None = None
    device_filter: DeviceFilter | None = None
    overlap_seconds: int = 300
    settle_seconds: int = 30
    max_requests_per_second: float = 10.0
    backfill_from: datetime | None = None
    max_consecutive_failures: int = 5
    time_tolerance_seconds: int = 120
    offline_after_minutes: int = 60
    payloads_nested_under_path: bool = False
    webhook_creates_devices: bool = True
    reconcile_lookback_hours: int = 48
    reconcile_interval_minutes: int = 60
    # Golioth path filter patterns (integrations.golioth.paths); None: every path but logs.
    mirrored_paths: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def offline_after(self) -> timedelta:
        return timedelta(minutes=self.offline_after_minutes)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> SyncSettings:
        return _parse(data or {})

    def to_json(self) -> dict[str, Any]:
        data = dict(self.extra)
        data.update(
            {
                "syncEnabled": self.sync_enabled,
                "syncIntervalSeconds": self.sync_interval_seconds,
                "timeWindow": self.time_window.to_json() if self.time_window else None,
                "deviceFilter": self.device_filter.to_json() if self.device_filter else None,
                "overlapSeconds": self.overlap_seconds,
                "settleSeconds": self.settle_seconds,
                "maxRequestsPerSecond": self.max_requests_per_second,
                "backfillFrom": self.backfill_from.isoformat() if self.backfill_from else None,
                "maxConsecutiveFailures": self.max_consecutive_failures,
                "timeToleranceSeconds": self.time_tolerance_seconds,
                "offlineAfterMinutes": self.offline_after_minutes,
                "payloadsNestedUnderPath": self.payloads_nested_under_path,
                "webhookCreatesDevices": self.webhook_creates_devices,
                "reconcileLookbackHours": self.reconcile_lookback_hours,
                "reconcileIntervalMinutes": self.reconcile_interval_minutes,
                "mirroredPaths": list(self.mirrored_paths) if self.mirrored_paths else None,
            }
        )
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


# --- parsing and validation ----------------------------------------------------------------------


class _Errors(dict):
    def add(self, key: str, message: str) -> None:
        self.setdefault(key, message)


def _parse(data: dict[str, Any]) -> SyncSettings:
    if not isinstance(data, dict):
        raise SettingsError({"settings": "must be a JSON object"})
    errors = _Errors()
    defaults = SyncSettings()
    values = {
        "sync_enabled": _bool(data, "syncEnabled", defaults.sync_enabled, errors),
        "sync_interval_seconds": _int(
            data,
            "syncIntervalSeconds",
            defaults.sync_interval_seconds,
            errors,
            minimum=MIN_INTERVAL_SECONDS,
            maximum=7 * 86_400,
        ),
        "overlap_seconds": _int(
            data, "overlapSeconds", defaults.overlap_seconds, errors, minimum=0, maximum=7 * 86_400
        ),
        "settle_seconds": _int(
            data, "settleSeconds", defaults.settle_seconds, errors, minimum=0, maximum=3600
        ),
        "max_requests_per_second": _number(
            data,
            "maxRequestsPerSecond",
            defaults.max_requests_per_second,
            errors,
            minimum=0.1,
            maximum=1000,
        ),
        "backfill_from": _datetime(data, "backfillFrom", errors),
        "max_consecutive_failures": _int(
            data,
            "maxConsecutiveFailures",
            defaults.max_consecutive_failures,
            errors,
            minimum=1,
            maximum=1000,
        ),
        "time_tolerance_seconds": _int(
            data,
            "timeToleranceSeconds",
            defaults.time_tolerance_seconds,
            errors,
            minimum=0,
            maximum=3600,
        ),
        "offline_after_minutes": _int(
            data,
            "offlineAfterMinutes",
            defaults.offline_after_minutes,
            errors,
            minimum=1,
            maximum=525_600,
        ),
        "payloads_nested_under_path": _bool(
            data, "payloadsNestedUnderPath", defaults.payloads_nested_under_path, errors
        ),
        "webhook_creates_devices": _bool(
            data, "webhookCreatesDevices", defaults.webhook_creates_devices, errors
        ),
        "reconcile_lookback_hours": _int(
            data,
            "reconcileLookbackHours",
            defaults.reconcile_lookback_hours,
            errors,
            minimum=1,
            maximum=MAX_RECONCILE_LOOKBACK_HOURS,
        ),
        "reconcile_interval_minutes": _reconcile_interval(data, defaults, errors),
        "time_window": _time_window(data.get("timeWindow"), errors),
        "device_filter": _device_filter(data.get("deviceFilter"), errors),
        "mirrored_paths": _mirrored_paths(data.get("mirroredPaths"), errors),
        "extra": {k: v for k, v in data.items() if k not in KNOWN_KEYS},
    }
    if errors:
        raise SettingsError(dict(errors))
    return SyncSettings(**values)


def _reconcile_interval(data: dict, defaults: SyncSettings, errors: _Errors) -> int:
    """Minutes between scheduled reconciles; 0 turns them off (the admin action still works)."""
    key = "reconcileIntervalMinutes"
    value = _int(data, key, defaults.reconcile_interval_minutes, errors, minimum=0, maximum=43_200)
    if 0 < value < MIN_RECONCILE_INTERVAL_MINUTES:
        errors.add(
            key, f"must be 0 (off) or at least {MIN_RECONCILE_INTERVAL_MINUTES} (got {value})"
        )
    return value


def _mirrored_paths(raw: Any, errors: _Errors) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        errors.add("mirroredPaths", "must be a list of path patterns (/sensor, /env/*), or null")
        return None
    try:
        return normalize_patterns(raw)
    except ValueError as exc:
        errors.add("mirroredPaths", str(exc))
        return None


def _bool(data: dict, key: str, default: bool, errors: _Errors) -> bool:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        errors.add(key, "must be true or false")
        return default
    return value


def _int(data: dict, key: str, default: int, errors: _Errors, *, minimum: int, maximum: int) -> int:
    value = data.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        errors.add(key, "must be a whole number")
        return default
    if not minimum <= value <= maximum:
        errors.add(key, f"must be between {minimum} and {maximum} (got {value})")
    return value


def _number(
    data: dict, key: str, default: float, errors: _Errors, *, minimum: float, maximum: float
) -> float:
    value = data.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        errors.add(key, "must be a number")
        return default
    if not minimum <= value <= maximum:
        errors.add(key, f"must be between {minimum:g} and {maximum:g} (got {value:g})")
    return float(value)


def _datetime(data: dict, key: str, errors: _Errors) -> datetime | None:
    value = data.get(key)
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        errors.add(key, f"{value!r} is not a date and time (use ISO 8601, e.g. 2026-01-31T00:00Z)")
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(value: Any) -> time:
    """ "HH:MM", 00:00-23:59; raises ValueError with a message staff can act on."""
    if not isinstance(value, str) or not _HHMM.match(value.strip()):
        raise ValueError(f"{value!r} is not a time of day; use HH:MM between 00:00 and 23:59")
    hours, minutes = value.strip().split(":")
    return time(int(hours), int(minutes))


def validate_timezone(name: Any) -> str:
    if not isinstance(name, str) or not name or name not in _timezones():
        raise ValueError(f"{name!r} is not a known time zone (e.g. Europe/Berlin, UTC)")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{name!r} is not a known time zone") from exc
    return name


def _timezones() -> set[str]:
    global _TIMEZONES
    if _TIMEZONES is None:
        _TIMEZONES = available_timezones() | {"UTC"}
    return _TIMEZONES


_TIMEZONES: set[str] | None = None


def validate_glob(pattern: Any) -> str:
    """fnmatch accepts anything; we refuse what is surely a typo: an unclosed `[`."""
    if not isinstance(pattern, str):
        raise ValueError("must be text")
    depth_open = False
    for i, char in enumerate(pattern):
        if char == "[" and not depth_open:
            depth_open = True
            start = i
        elif char == "]" and depth_open and i > start + 1:
            depth_open = False
    if depth_open:
        raise ValueError(f"{pattern!r} has an unclosed '[' (use [[] to match a literal '[')")
    if len(pattern) > 200:
        raise ValueError("is longer than 200 characters")
    return pattern


def _time_window(raw: Any, errors: _Errors) -> TimeWindow | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        errors.add("timeWindow", "must be an object with start, end, timezone and days, or null")
        return None
    parsed: dict[str, Any] = {}
    for key in ("start", "end"):
        try:
            parsed[key] = parse_hhmm(raw.get(key))
        except ValueError as exc:
            errors.add(f"timeWindow.{key}", str(exc))
    try:
        parsed["timezone"] = validate_timezone(raw.get("timezone", "UTC"))
    except ValueError as exc:
        errors.add("timeWindow.timezone", str(exc))
    days = raw.get("days", list(range(7)))
    if (
        not isinstance(days, list)
        or not days
        or any(isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 6 for d in days)
    ):
        errors.add(
            "timeWindow.days", "must name at least one weekday (0 = Sunday ... 6 = Saturday)"
        )
    else:
        parsed["days"] = tuple(sorted(set(days)))
    if len(parsed) < 4:
        return None
    return TimeWindow(**parsed)


def _str_list(raw: dict, key: str, errors: _Errors) -> tuple[str, ...]:
    value = raw.get(key) or []
    if not isinstance(value, list) or any(not isinstance(v, str) or not v.strip() for v in value):
        errors.add(f"deviceFilter.{key}", "must be a list of non-empty identifiers")
        return ()
    return tuple(dict.fromkeys(v.strip() for v in value))


def _device_filter(raw: Any, errors: _Errors) -> DeviceFilter | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        errors.add("deviceFilter", "must be an object or null")
        return None
    tag_match = raw.get("tagMatch") or "all"
    if tag_match not in TAG_MATCH_CHOICES:
        errors.add("deviceFilter.tagMatch", "must be 'all' or 'any'")
    pattern = raw.get("namePattern") or ""
    try:
        validate_glob(pattern)
    except ValueError as exc:
        errors.add("deviceFilter.namePattern", str(exc))
    hours = raw.get("reportedWithinHours")
    if hours is not None and (isinstance(hours, bool) or not isinstance(hours, int) or hours < 1):
        errors.add("deviceFilter.reportedWithinHours", "must be a whole number of hours, 1 or more")
    enabled_only = raw.get("enabledOnly", False)
    if not isinstance(enabled_only, bool):
        errors.add("deviceFilter.enabledOnly", "must be true or false")
    result = DeviceFilter(
        tags=_str_list(raw, "tags", errors),
        tag_match=tag_match,
        device_ids=_str_list(raw, "deviceIds", errors),
        name_pattern=pattern,
        cohort_ids=_str_list(raw, "cohortIds", errors),
        blueprint_ids=_str_list(raw, "blueprintIds", errors),
        enabled_only=bool(enabled_only),
        reported_within_hours=hours,
    )
    return None if result.is_empty else result


def _js_weekday(moment: datetime) -> int:
    return (moment.weekday() + 1) % 7
