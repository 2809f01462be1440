"""Every scalar setting of an integration, declared once (SETTINGS).

Parsing, validation, the settings JSON (integrations.sync_settings), the admin's form fields and
fieldsets (integrations.admin) and `manage.py integration`'s flags are all made from this table:
a new setting is one row here and one typed attribute on SyncSettings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from integrations.golioth.paths import normalize_patterns

MIN_INTERVAL_SECONDS = 60
# A reconcile reads Golioth's counts over its lookback: a year is the most any plan keeps.
MAX_RECONCILE_LOOKBACK_HOURS = 366 * 24
MIN_RECONCILE_INTERVAL_MINUTES = 5
# A century: any longer is "forever", which is the blank default.
MAX_TELEMETRY_RETENTION_DAYS = 36_600


@dataclass(frozen=True)
class Setting:
    """One scalar setting, declared once: its JSON key, attribute (and form field and flag) name,
    kind, default, bounds and words. Parsing, validation, JSON, the admin's form fields and
    fieldsets and `manage.py integration`'s flags are all made from SETTINGS."""

    key: str  # camelCase JSON key, as operators' SQL reads it
    attr: str  # SyncSettings attribute, form field, --flag-name
    kind: str  # "bool", "int", "float", "datetime", "paths"
    default: Any
    label: str
    help: str
    minimum: float | None = None
    maximum: float | None = None
    group: str = "sync"  # the admin fieldset: "sync", "webhook" or "retention"
    check: Callable[[Any], str | None] | None = None  # a rule beyond the bounds

    def parse(self, raw: Any) -> Any:
        """The typed value of `raw` (not None); ValueError says what is wrong."""
        value = _KINDS[self.kind](raw)
        if self.minimum is not None and self.maximum is not None:
            if not self.minimum <= value <= self.maximum:
                low, high, got = (_shown(n) for n in (self.minimum, self.maximum, value))
                raise ValueError(f"must be between {low} and {high} (got {got})")
        if self.check and (problem := self.check(value)):
            raise ValueError(problem)
        return value

    def dump(self, value: Any) -> Any:
        if self.kind == "datetime":
            return value.isoformat() if value else None
        if self.kind == "paths":
            return list(value) if value else None
        return value


def _shown(number: float) -> str:
    """A bound or a value as staff typed it: 604800, 0.1 (never 6.048e+05)."""
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _as_bool(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise ValueError("must be true or false")
    return raw


def _as_int(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError("must be a whole number")
    return raw


def _as_float(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError("must be a number")
    return float(raw)


def _as_datetime(raw: Any) -> datetime | None:
    if raw == "":
        return None
    try:
        parsed = datetime.fromisoformat(str(raw))
    except ValueError:
        raise ValueError(
            f"{raw!r} is not a date and time (use ISO 8601, e.g. 2026-01-31T00:00Z)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _as_paths(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise ValueError("must be a list of path patterns (/sensor, /env/*), or null")
    return normalize_patterns(raw)


_KINDS: dict[str, Callable[[Any], Any]] = {
    "bool": _as_bool,
    "int": _as_int,
    "float": _as_float,
    "datetime": _as_datetime,
    "paths": _as_paths,
}


def _reconcile_interval_rule(minutes: int) -> str | None:
    if 0 < minutes < MIN_RECONCILE_INTERVAL_MINUTES:
        return f"must be 0 (off) or at least {MIN_RECONCILE_INTERVAL_MINUTES} (got {minutes})"
    return None


SETTINGS: tuple[Setting, ...] = (
    Setting("syncEnabled", "sync_enabled", "bool", True, "Sync enabled", "Run the scheduled pull."),
    Setting(
        "syncIntervalSeconds",
        "sync_interval_seconds",
        "int",
        300,
        "Sync interval (seconds)",
        "How often the pull runs; 60 or more.",
        MIN_INTERVAL_SECONDS,
        7 * 86_400,
    ),
    Setting(
        "overlapSeconds",
        "overlap_seconds",
        "int",
        300,
        "Overlap (seconds)",
        "Each run re-reads this much before the previous window's end (late readings).",
        0,
        7 * 86_400,
    ),
    Setting(
        "settleSeconds",
        "settle_seconds",
        "int",
        30,
        "Settle (seconds)",
        "How far behind now a sync window closes.",
        0,
        3600,
    ),
    Setting(
        "maxRequestsPerSecond",
        "max_requests_per_second",
        "float",
        10.0,
        "Max requests per second",
        "Client-side limit on Golioth API calls (Golioth publishes none).",
        0.1,
        1000,
    ),
    Setting(
        "backfillFrom",
        "backfill_from",
        "datetime",
        None,
        "Backfill from",
        "Where the first run starts (2026-01-31 00:00, UTC); blank: one interval ago.",
    ),
    Setting(
        "maxConsecutiveFailures",
        "max_consecutive_failures",
        "int",
        5,
        "Max consecutive failures",
        "Failed runs in a row before the integration's status becomes “error”.",
        1,
        1000,
    ),
    Setting(
        "timeToleranceSeconds",
        "time_tolerance_seconds",
        "int",
        120,
        "Time tolerance (seconds)",
        "A webhook reading without Golioth's time matches the pulled one within this.",
        0,
        3600,
    ),
    Setting(
        "offlineAfterMinutes",
        "offline_after_minutes",
        "int",
        60,
        "Offline after (minutes)",
        "A device that has not reported for this long shows as offline.",
        1,
        525_600,
    ),
    Setting(
        "reconcileLookbackHours",
        "reconcile_lookback_hours",
        "int",
        48,
        "Reconcile lookback (hours)",
        "How far back “Verify completeness” compares Golioth's counts with gsync's "
        "(Golioth keeps LightDB Stream 30 days unless your plan says more).",
        1,
        MAX_RECONCILE_LOOKBACK_HOURS,
    ),
    Setting(
        "reconcileIntervalMinutes",
        "reconcile_interval_minutes",
        "int",
        60,
        "Reconcile every (minutes)",
        "How often the scheduler verifies completeness; 0: never (the action still works).",
        0,
        43_200,
        check=_reconcile_interval_rule,
    ),
    Setting(
        "webhookQueued",
        "webhook_queued",
        "bool",
        True,
        "Queue webhook deliveries",
        "Answer each webhook 202 at once and store its reading in the ingest worker, in "
        "batches (big fleets: several times the rate). Off: store the reading before answering "
        "200 with its counts (small fleets without an ingest worker).",
        group="webhook",
    ),
    Setting(
        "webhookCreatesDevices",
        "webhook_creates_devices",
        "bool",
        True,
        "Webhook creates devices",
        "A webhook from an unknown device adds it (else it is rejected).",
        group="webhook",
    ),
    Setting(
        "payloadsNestedUnderPath",
        "payloads_nested_under_path",
        "bool",
        False,
        "Payloads nested under path",
        "The pipeline stores payloads nested under their path (Golioth's legacy one).",
        group="webhook",
    ),
    Setting(
        "mirroredPaths",
        "mirrored_paths",
        "paths",
        None,
        "Mirrored paths",
        "Stream paths this integration keeps, as Golioth's path filter writes them: "
        "/sensor exactly, /env/* every path starting /env/; commas or new lines between them. "
        "Blank: every path but /logs (the SDK's log lines). Webhook deliveries of other paths "
        "are kept as ignored; the pipeline below lists one filter per pattern.",
        group="webhook",
    ),
    Setting(
        "telemetryRetentionDays",
        "telemetry_retention_days",
        "int",
        None,
        "Keep readings (days)",
        "Readings older than this (by Golioth's time) are deleted by the daily prune; blank: "
        "kept forever. Longer than the reconcile lookback, or the reconcile fetches them again.",
        1,
        MAX_TELEMETRY_RETENTION_DAYS,
        group="retention",
    ),
)
DEFAULTS: dict[str, Any] = {s.attr: s.default for s in SETTINGS}
