"""The sync time window: when the scheduled pull may run, in the window's own time zone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

# Days as the old system stored them (JavaScript's getDay): 0 = Sunday ... 6 = Saturday.
DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


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


def parse_time_window(raw: Any, errors: dict[str, str]) -> TimeWindow | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        errors.setdefault(
            "timeWindow", "must be an object with start, end, timezone and days, or null"
        )
        return None
    parsed: dict[str, Any] = {}
    for key in ("start", "end"):
        try:
            parsed[key] = parse_hhmm(raw.get(key))
        except ValueError as exc:
            errors.setdefault(f"timeWindow.{key}", str(exc))
    try:
        parsed["timezone"] = validate_timezone(raw.get("timezone", "UTC"))
    except ValueError as exc:
        errors.setdefault("timeWindow.timezone", str(exc))
    days = raw.get("days", list(range(7)))
    if (
        not isinstance(days, list)
        or not days
        or any(isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 6 for d in days)
    ):
        errors.setdefault(
            "timeWindow.days", "must name at least one weekday (0 = Sunday ... 6 = Saturday)"
        )
    else:
        parsed["days"] = tuple(sorted(set(days)))
    if len(parsed) < 4:
        return None
    return TimeWindow(**parsed)


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


def _js_weekday(moment: datetime) -> int:
    return (moment.weekday() + 1) % 7
