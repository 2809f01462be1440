from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from integrations.device_filter import validate_glob
from integrations.sync_settings import SettingsError, SyncSettings
from integrations.time_window import parse_hhmm, validate_timezone

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def test_settings_defaults():
    settings = SyncSettings.from_json({})

    assert settings.sync_enabled is True
    assert settings.sync_interval_seconds == 300
    assert settings.overlap_seconds == 300
    assert settings.settle_seconds == 30
    assert settings.time_window is None and settings.device_filter is None
    assert settings.in_window(NOW)


def test_settings_round_trip_keeps_unknown_keys():
    data = {
        "syncEnabled": False,
        "syncIntervalSeconds": 900,
        "timeWindow": {
            "start": "22:00",
            "end": "06:00",
            "timezone": "Europe/Berlin",
            "days": [5, 6],
        },
        "deviceFilter": {
            "tags": ["a"],
            "tagMatch": "any",
            "deviceIds": [],
            "namePattern": "s-*",
            "cohortIds": [],
            "blueprintIds": [],
            "enabledOnly": True,
            "reportedWithinHours": 24,
        },
        "backfillFrom": "2026-01-31T00:00:00+00:00",
        "legacyColour": "blue",
    }

    round_tripped = SyncSettings.from_json(data).to_json()

    assert {key: round_tripped[key] for key in data} == data
    assert SyncSettings.from_json(round_tripped).to_json() == round_tripped


def test_settings_to_json_uses_documented_camel_case_keys():
    keys = set(SyncSettings().to_json())

    assert {
        "syncEnabled",
        "syncIntervalSeconds",
        "timeWindow",
        "deviceFilter",
        "overlapSeconds",
        "settleSeconds",
        "maxRequestsPerSecond",
        "backfillFrom",
    } <= keys


def test_settings_empty_filter_is_null():
    assert SyncSettings.from_json({"deviceFilter": {"tags": []}}).device_filter is None


@pytest.mark.parametrize(
    ("data", "key", "message"),
    [
        ({"syncIntervalSeconds": 10}, "syncIntervalSeconds", "must be between 60 and 604800"),
        ({"syncIntervalSeconds": "300"}, "syncIntervalSeconds", "must be a whole number"),
        ({"syncEnabled": "yes"}, "syncEnabled", "must be true or false"),
        ({"backfillFrom": "last tuesday"}, "backfillFrom", "is not a date and time"),
        (
            {"timeWindow": {"start": "25:00", "end": "06:00"}},
            "timeWindow.start",
            "'25:00' is not a time of day",
        ),
        (
            {"timeWindow": {"start": "22:00", "end": "06:00", "timezone": "Mars/Base"}},
            "timeWindow.timezone",
            "'Mars/Base' is not a known time zone",
        ),
        (
            {"timeWindow": {"start": "22:00", "end": "06:00", "days": [7]}},
            "timeWindow.days",
            "must name at least one weekday",
        ),
        ({"timeWindow": "nights"}, "timeWindow", "must be an object"),
        (
            {"deviceFilter": {"namePattern": "sensor-["}},
            "deviceFilter.namePattern",
            "has an unclosed '['",
        ),
        ({"deviceFilter": {"tagMatch": "some"}}, "deviceFilter.tagMatch", "must be 'all' or 'any'"),
        (
            {"deviceFilter": {"reportedWithinHours": 0}},
            "deviceFilter.reportedWithinHours",
            "1 or more",
        ),
        ({"deviceFilter": {"tags": "a,b"}}, "deviceFilter.tags", "must be a list"),
    ],
)
def test_settings_error_names_the_key_and_the_problem(data, key, message):
    with pytest.raises(SettingsError) as raised:
        SyncSettings.from_json(data)

    assert message in raised.value.errors[key]


def test_settings_errors_are_all_reported_at_once():
    with pytest.raises(SettingsError) as raised:
        SyncSettings.from_json({"syncIntervalSeconds": 1, "settleSeconds": -1})

    assert set(raised.value.errors) == {"syncIntervalSeconds", "settleSeconds"}


def test_settings_helpers_accept_good_values():
    assert parse_hhmm("07:05") == time(7, 5)
    assert validate_timezone("Europe/Berlin") == "Europe/Berlin"
    assert validate_glob("gw-[[]1]*") == "gw-[[]1]*"


# --- mirrored paths ------------------------------------------------------------------------------


def test_mirrored_paths_default_is_every_path_but_logs():
    settings = SyncSettings.from_json({})

    assert settings.mirrored_paths is None
    assert settings.to_json()["mirroredPaths"] is None
    assert settings.mirrors_path("sensor")
    assert settings.mirrors_path("env/temp")
    assert settings.mirrors_path("")  # no Ce-Type path: cannot be sorted, so kept
    assert not settings.mirrors_path("logs")
    assert not settings.mirrors_path("/logs/")


def test_mirrored_paths_match_like_goliths_path_filter():
    settings = SyncSettings.from_json({"mirroredPaths": ["/sensor", "/env/*"]})

    assert settings.mirrors_path("sensor")
    assert settings.mirrors_path("/sensor/")
    assert settings.mirrors_path("env/temp")
    assert not settings.mirrors_path("env")  # /env/* matches /env/..., not /env itself
    assert not settings.mirrors_path("sensors")
    assert not settings.mirrors_path("logs")


def test_mirrored_paths_are_stored_in_goliths_syntax():
    settings = SyncSettings.from_json({"mirroredPaths": ["sensor/", " env* ", "/sensor", "/a/b"]})

    assert settings.to_json()["mirroredPaths"] == ["/sensor", "/env*", "/a/b"]
    assert SyncSettings.from_json({"mirroredPaths": ["*"]}).mirrors_path("logs")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/sensor", "must be a list of path patterns"),
        ([], "must list at least one path pattern, or be null"),
        (["/a/*/b"], "a * may only end a pattern"),
        (["/a b"], "holds spaces or control characters"),
        ([""], "must be non-empty text"),
        ([3], "must be non-empty text"),
        (["/env/*", "/env/temp"], "'/env/temp' is already covered by '/env/*'"),
        (["*", "/sensor"], "'/sensor' is already covered by '*'"),
    ],
)
def test_mirrored_paths_refuses_what_golioth_cannot_filter(value, message):
    with pytest.raises(SettingsError) as raised:
        SyncSettings.from_json({"mirroredPaths": value})

    assert message in raised.value.errors["mirroredPaths"]


@pytest.mark.parametrize(
    ("settings", "key", "message"),
    [
        ({"reconcileLookbackHours": 0}, "reconcileLookbackHours", "must be between 1 and 8784"),
        ({"reconcileLookbackHours": "48"}, "reconcileLookbackHours", "must be a whole number"),
        (
            {"reconcileIntervalMinutes": 2},
            "reconcileIntervalMinutes",
            "must be 0 (off) or at least 5",
        ),
        ({"reconcileIntervalMinutes": -1}, "reconcileIntervalMinutes", "must be between 0"),
    ],
)
def test_reconcile_settings_are_validated(settings, key, message):
    with pytest.raises(SettingsError) as caught:
        SyncSettings.from_json(settings)
    assert message in caught.value.errors[key]


def test_reconcile_settings_default_to_48_hours_hourly():
    sync = SyncSettings.from_json({})
    assert (sync.reconcile_lookback_hours, sync.reconcile_interval_minutes) == (48, 60)
    assert sync.to_json()["reconcileLookbackHours"] == 48


def test_telemetry_retention_defaults_to_forever():
    sync = SyncSettings.from_json({})
    assert sync.telemetry_retention_days is None
    assert sync.to_json()["telemetryRetentionDays"] is None
    assert SyncSettings.from_json({"telemetryRetentionDays": 90}).telemetry_retention_days == 90


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"telemetryRetentionDays": 0}, "must be between 1 and 36600 (got 0)"),
        ({"telemetryRetentionDays": -7}, "must be between 1 and 36600 (got -7)"),
        ({"telemetryRetentionDays": 1.5}, "must be a whole number"),
        (
            {"telemetryRetentionDays": 2},
            "must be longer than the reconcile lookback (2 days): every run would fetch again "
            "what the prune deleted (got 2)",
        ),
        (
            {"telemetryRetentionDays": 9, "reconcileLookbackHours": 240},
            "must be longer than the reconcile lookback (10 days)",
        ),
        (
            {"telemetryRetentionDays": 3, "overlapSeconds": 4 * 86_400},
            "must be longer than the overlap (4 days)",
        ),
    ],
)
def test_telemetry_retention_is_validated(settings, message):
    with pytest.raises(SettingsError) as caught:
        SyncSettings.from_json(settings)
    assert message in caught.value.errors["telemetryRetentionDays"]


def test_telemetry_retention_just_past_the_lookback_is_accepted():
    sync = SyncSettings.from_json({"telemetryRetentionDays": 3, "reconcileLookbackHours": 71})
    assert sync.telemetry_retention_days == 3
