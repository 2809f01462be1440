"""The device filter (integrations.device_filter): every part that is set must hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from integrations.device_filter import DeviceFilter

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


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


def test_what_golioth_filters_itself():
    device_filter = DeviceFilter(
        tags=("a", "b"), enabled_only=True, cohort_ids=("c1",), blueprint_ids=("b1", "b2")
    )

    assert device_filter.golioth_device_query() == {
        "tags": ["a", "b"],
        "enabled": True,
        "cohort_id": "c1",
    }
    assert device_filter.golioth_stream_tags() == ("a", "b")
    assert DeviceFilter(tags=("a", "b"), tag_match="any").golioth_stream_tags() == ()
