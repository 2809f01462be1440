"""The device filter: which of a project's devices an integration's pull reads."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

TAG_MATCH_CHOICES = ("all", "any")


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
        """`device` is anything with the attributes of telemetry.Device / payloads.DeviceRecord.
        Every part of the filter that is set must hold; an empty part matches every device."""
        return (
            self._tags_match(set(device.tag_ids or ()))
            and (not self.device_ids or device.external_id in self.device_ids)
            and (not self.name_pattern or fnmatch.fnmatchcase(device.name or "", self.name_pattern))
            and (not self.cohort_ids or device.cohort_id in self.cohort_ids)
            and (not self.blueprint_ids or device.blueprint_id in self.blueprint_ids)
            and (not self.enabled_only or device.enabled)
            and self._reported_recently(device.last_report, now=now)
        )

    def _tags_match(self, tags: set[str]) -> bool:
        if not self.tags:
            return True
        wanted = set(self.tags)
        return wanted <= tags if self.tag_match == "all" else bool(wanted & tags)

    def _reported_recently(self, last_report: datetime | None, *, now: datetime) -> bool:
        if self.reported_within_hours is None:
            return True
        cutoff = now - timedelta(hours=self.reported_within_hours)
        return last_report is not None and last_report >= cutoff

    # What Golioth filters itself (fewer pages); `matches` still checks every device read.

    def golioth_device_query(self) -> dict[str, Any]:
        """Filters for Golioth's device list (GET /devices) that this filter implies."""
        query: dict[str, Any] = {}
        if self.tags and self.tag_match == "all":
            query["tags"] = list(self.tags)
        if self.enabled_only:
            query["enabled"] = True
        if len(self.cohort_ids) == 1:
            query["cohort_id"] = self.cohort_ids[0]
        if len(self.blueprint_ids) == 1:
            query["blueprint_id"] = self.blueprint_ids[0]
        return query

    def golioth_stream_tags(self) -> tuple[str, ...]:
        """Tags the stream query can require (all of them: Golioth's tags filter is AND)."""
        return self.tags if self.tag_match == "all" else ()

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


def _str_list(raw: dict, key: str, errors: dict[str, str]) -> tuple[str, ...]:
    value = raw.get(key) or []
    if not isinstance(value, list) or any(not isinstance(v, str) or not v.strip() for v in value):
        errors.setdefault(f"deviceFilter.{key}", "must be a list of non-empty identifiers")
        return ()
    return tuple(dict.fromkeys(v.strip() for v in value))


def parse_device_filter(raw: Any, errors: dict[str, str]) -> DeviceFilter | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        errors.setdefault("deviceFilter", "must be an object or null")
        return None
    tag_match = raw.get("tagMatch") or "all"
    if tag_match not in TAG_MATCH_CHOICES:
        errors.setdefault("deviceFilter.tagMatch", "must be 'all' or 'any'")
    pattern = raw.get("namePattern") or ""
    try:
        validate_glob(pattern)
    except ValueError as exc:
        errors.setdefault("deviceFilter.namePattern", str(exc))
    hours = raw.get("reportedWithinHours")
    if hours is not None and (isinstance(hours, bool) or not isinstance(hours, int) or hours < 1):
        errors.setdefault(
            "deviceFilter.reportedWithinHours", "must be a whole number of hours, 1 or more"
        )
    enabled_only = raw.get("enabledOnly", False)
    if not isinstance(enabled_only, bool):
        errors.setdefault("deviceFilter.enabledOnly", "must be true or false")
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
