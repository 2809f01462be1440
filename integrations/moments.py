"""The time syntax staff type, in the commands (`--since`, `--until`) and the Backfill form.

An ISO 8601 date or datetime (naive means UTC), an age back from now (`30m`, `2h`, `3d`,
`1w`), or `now`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

SYNTAX = (
    "an ISO 8601 date or datetime (2026-03-01, 2026-03-01 12:00, 2026-03-01T12:00+01:00; "
    "naive means UTC), an age (30m, 2h, 3d, 1w) or now"
)
_AGE = re.compile(r"^(\d+)\s*([smhdw])$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_moment(value: str, *, now: datetime) -> datetime:
    """`value` as an aware datetime; ValueError saying what is accepted."""
    text = value.strip()
    if text.lower() == "now":
        return now
    if match := _AGE.match(text):
        try:
            return now - timedelta(**{_UNITS[match[2].lower()]: int(match[1])})
        except OverflowError:
            raise ValueError(f"{value!r} reaches back further than any calendar") from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a time. Use {SYNTAX}.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
