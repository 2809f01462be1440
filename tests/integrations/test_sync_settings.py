from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from integrations.device_filter import DeviceFilter, validate_glob
from integrations.sync_settings import SettingsError, SyncSettings
from integrations.time_window import TimeWindow, parse_hhmm, validate_timezone

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def device(**fields) -> SimpleNamespace:
    defaults = {
        "external_id": "d1",
        "name": "sensor-1",
        "tag_ids": [],
        "cohort_id": "",
        "blueprint_id": "",
        "enabled": True,
        "last_report": NOW - timedelta(hours=1),
    }
    return SimpleNamespace(**{**defaults, **fields})


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


def test_window_overnight_in_berlin_crosses_midnight():
    # Friday (5) 22:00 to 06:00: belongs to Friday, so it covers Saturday morning.
    window = TimeWindow(start=time(22), end=time(6), timezone="Europe/Berlin", days=(5,))

    assert window.contains(berlin(2026, 3, 6, 23, 30))  # Friday night
    assert window.contains(berlin(2026, 3, 7, 5, 59))  # Saturday early morning
    assert not window.contains(berlin(2026, 3, 7, 6, 0))  # closes at 06:00
    assert not window.contains(berlin(2026, 3, 7, 23, 0))  # Saturday night: not a window day
    assert not window.contains(berlin(2026, 3, 6, 5, 0))  # Friday morning: Thursday's night


def test_window_is_evaluated_in_its_own_timezone():
    window = TimeWindow(start=time(9), end=time(17), timezone="Europe/Berlin")

    assert window.contains(datetime(2026, 1, 15, 8, 30, tzinfo=UTC))  # 09:30 in Berlin
    assert not window.contains(datetime(2026, 1, 15, 16, 30, tzinfo=UTC))  # 17:30 in Berlin


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        # 2026-03-29: Berlin springs forward at 02:00 -> 03:00 (UTC+1 -> UTC+2).
        (datetime(2026, 3, 29, 0, 30, tzinfo=UTC), True),  # 01:30 CET
        (datetime(2026, 3, 29, 1, 30, tzinfo=UTC), True),  # 03:30 CEST
        (datetime(2026, 3, 29, 2, 30, tzinfo=UTC), False),  # 04:30 CEST
        # 2026-10-25: falls back at 03:00 -> 02:00; 02:30 happens twice, both inside.
        (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), True),  # 02:30 CEST
        (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), True),  # 02:30 CET
        (datetime(2026, 10, 25, 3, 30, tzinfo=UTC), False),  # 04:30 CET
    ],
)
def test_window_across_dst_changes(moment, inside):
    window = TimeWindow(start=time(1), end=time(4), timezone="Europe/Berlin")

    assert window.contains(moment) is inside


def test_window_start_equal_end_is_the_whole_day_on_its_days():
    window = TimeWindow(start=time(0), end=time(0), timezone="UTC", days=(3,))

    assert window.contains(datetime(2026, 3, 4, 23, 59, tzinfo=UTC))  # a Wednesday
    assert not window.contains(datetime(2026, 3, 5, 0, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("tags", "match", "expected"),
    [
        (["a", "b"], "all", True),
        (["a"], "all", False),
        (["a"], "any", True),
        (["c"], "any", False),
        ([], "any", False),
    ],
)
def test_filter_tags_all_or_any(tags, match, expected):
    device_filter = DeviceFilter(tags=("a", "b"), tag_match=match)

    assert device_filter.matches(device(tag_ids=tags), now=NOW) is expected


def test_filter_name_glob_and_ids():
    device_filter = DeviceFilter(name_pattern="sensor-[0-9]*", device_ids=("d1", "d2"))

    assert device_filter.matches(device(name="sensor-42"), now=NOW)
    assert not device_filter.matches(device(name="gateway-1"), now=NOW)
    assert not device_filter.matches(device(name="sensor-4", external_id="d9"), now=NOW)


def test_filter_reported_within_hours():
    device_filter = DeviceFilter(reported_within_hours=24)

    assert device_filter.matches(device(last_report=NOW - timedelta(hours=23)), now=NOW)
    assert not device_filter.matches(device(last_report=NOW - timedelta(hours=25)), now=NOW)
    assert not device_filter.matches(device(last_report=None), now=NOW)


def test_filter_enabled_cohort_blueprint():
    device_filter = DeviceFilter(enabled_only=True, cohort_ids=("c1",), blueprint_ids=("b1",))

    assert device_filter.matches(device(cohort_id="c1", blueprint_id="b1"), now=NOW)
    assert not device_filter.matches(
        device(cohort_id="c1", blueprint_id="b1", enabled=False), now=NOW
    )
    assert not device_filter.matches(device(cohort_id="c2", blueprint_id="b1"), now=NOW)


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
