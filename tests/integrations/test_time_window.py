"""The sync time window (integrations.time_window): in its own time zone, overnight, across DST,
and when it next opens."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from integrations.time_window import TimeWindow

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


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


def test_next_opening_is_the_next_window_day_in_its_own_time_zone():
    window = TimeWindow(start=time(22), end=time(6), timezone="Europe/Berlin", days=(1, 5))

    # Monday 23:00 Berlin is inside; from then the next opening is Friday 22:00.
    assert window.next_opening(berlin(2026, 3, 2, 23)) == berlin(2026, 3, 6, 22)
    assert window.next_opening(berlin(2026, 3, 2, 22)) == berlin(2026, 3, 2, 22)
    # Across the spring DST change: Monday 30 March opens at 22:00 CEST (20:00 UTC).
    assert window.next_opening(berlin(2026, 3, 28, 12)) == datetime(2026, 3, 30, 20, tzinfo=UTC)


def test_a_whole_day_window_opens_at_midnight_and_no_days_never_opens():
    whole_wednesday = TimeWindow(start=time(0), end=time(0), timezone="UTC", days=(3,))
    assert whole_wednesday.next_opening(datetime(2026, 3, 2, 9, tzinfo=UTC)) == datetime(
        2026, 3, 4, tzinfo=UTC
    )
    assert (
        TimeWindow(start=time(1), end=time(2), days=()).next_opening(
            datetime(2026, 3, 2, tzinfo=UTC)
        )
        is None
    )
