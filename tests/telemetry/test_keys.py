"""The dedup key: what makes two readings one, whichever path brought them."""

from datetime import UTC, datetime, timedelta

import pytest

from telemetry.keys import canonical_json, dedup_key

WHEN = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def key(**overrides):
    reading = {
        "integration_id": 1,
        "device_external_id": "dev-1",
        "timestamp": WHEN,
        "payload": {"temp": 21.5, "hum": 40},
    }
    return dedup_key(**(reading | overrides))


def test_key_ignores_key_order_and_time_zone_of_the_same_instant():
    same_instant = WHEN.astimezone(datetime.now().astimezone().tzinfo)
    assert key(payload={"hum": 40, "temp": 21.5}, timestamp=same_instant) == key()


@pytest.mark.parametrize(
    "change",
    [
        {"integration_id": 2},
        {"device_external_id": "dev-2"},
        {"timestamp": WHEN + timedelta(microseconds=1)},
        {"payload": {"temp": 21.6, "hum": 40}},
    ],
)
def test_any_part_of_the_reading_changes_the_key(change):
    assert key(**change) != key()


def test_naive_time_is_refused_not_guessed():
    with pytest.raises(ValueError, match="naive"):
        key(timestamp=WHEN.replace(tzinfo=None))


def test_canonical_json_is_compact_sorted_utf8_and_refuses_nan():
    assert canonical_json({"b": "é", "a": [1, 2]}) == '{"a":[1,2],"b":"é"}'.encode()
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})
