"""The time syntax of the commands and the Backfill form (integrations.moments)."""

from datetime import UTC, datetime, timedelta

import pytest

from integrations.moments import parse_moment

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        (" 90m ", NOW - timedelta(minutes=90)),
        ("2H", NOW - timedelta(hours=2)),
        ("1w", NOW - timedelta(weeks=1)),
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01 12:30", datetime(2026, 3, 1, 12, 30, tzinfo=UTC)),
        ("2026-03-01T12:30+01:00", datetime(2026, 3, 1, 11, 30, tzinfo=UTC)),
    ],
)
def test_dates_ages_and_now(text, expected):
    assert parse_moment(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2h ago", "-3d", "99999999999999w"])
def test_anything_else_says_what_is_accepted(text):
    with pytest.raises(ValueError, match="not a time|further than any calendar"):
        parse_moment(text, now=NOW)
