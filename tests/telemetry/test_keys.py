"""The dedup key: what makes two readings one, whichever path brought them."""

from datetime import UTC, datetime, timedelta, timezone

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


@pytest.mark.parametrize(
    ("reading", "stored"),
    [
        (
            {"payload": {"temp": 21.5, "hum": 40, "note": "é\\\t"}},
            "b3cd2bef-84a4-cde3-9a1d-b4556c9abe1c",
        ),
        (
            {
                "integration_id": 7,
                "timestamp": datetime(
                    1969, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=2))
                ),
                "payload": [1, 2.5e300, None],
            },
            "90c2182a-f742-0278-3ec8-e44d6313a050",
        ),
    ],
)
def test_key_of_a_reading_is_the_key_already_stored_for_it(reading, stored):
    # Keys computed by the first release: a change to the rule would store every reading of
    # an existing database a second time.
    assert str(key(**reading)) == stored
