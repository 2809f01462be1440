"""Reading a LightDB Stream window completely while Golioth's data moves under it.

Golioth pages stream results newest first, by offset (golioth-api.md §3). Two things move the
offsets while a window is being paged:
- readings that land inside the window: devices that buffer while offline upload back-dated
  batches (docs data-routing "Legacy LightDB Stream": `batch` + `extract-timestamp`), so older
  readings are pushed to later pages, past a page count fixed from page 0's `total`;
- deletions (retention), which pull readings to earlier pages, so one slips between two pages.

So one page's `total` is never trusted. A slice of the window is paged until a short page, and it
counts as read only when every page's `total` agrees with the others and with the rows read. A
reply without `total` (the OpenAPI has the field; no captured stream reply shows it) is paged until
a short page and checked for the one symptom visible without it: a reading seen on two
pages. A slice that moved is read again, in halves (smaller slices are read faster, so
they are less likely to move again); after `attempts` tries the read fails with
InconsistentWindowError, so the run fails and keeps its cursor instead of reporting success.

A window too big to read in one go (more than `slice_max` readings by its `total`, or by the
density of its first page when there is no total) is first cut in time into slices of about
`slice_target` readings: a re-read then costs a slice, not the window.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from integrations.golioth.errors import InconsistentWindowError
from integrations.golioth.payloads import StreamReading

SLICE_MAX = 5_000
SLICE_TARGET = 2_500
ATTEMPTS = 3
# Slices are never cut finer than this: a second holding thousands of readings is paged as one.
MIN_SLICE = timedelta(seconds=1)


@dataclass(frozen=True)
class Page:
    """One stream reply: its readings (oldest first), `total` as sent (None when absent)."""

    readings: list[StreamReading]
    total: int | None
    per_page: int

    @property
    def full(self) -> bool:
        return len(self.readings) >= self.per_page


# (start, end, page number) -> the page; (start, end, page numbers) -> those pages, in order.
FetchOne = Callable[[datetime, datetime, int], Page]
FetchMany = Callable[[datetime, datetime, Iterable[int]], Iterator[Page]]


@dataclass
class WindowStats:
    slices: int = 0
    rereads: int = 0


@dataclass
class WindowReader:
    fetch_one: FetchOne
    fetch_many: FetchMany
    slice_max: int = SLICE_MAX
    slice_target: int = SLICE_TARGET
    attempts: int = ATTEMPTS
    speculate: int = 4
    stats: WindowStats = field(default_factory=WindowStats)

    def read(self, start: datetime, end: datetime) -> Iterator[list[StreamReading]]:
        """Every reading in [start, end), one list per page (oldest first within a page)."""
        if start < end:
            yield from self._slice(start, end, self.attempts)

    def _slice(
        self, start: datetime, end: datetime, attempts: int
    ) -> Iterator[list[StreamReading]]:
        first = self.fetch_one(start, end, 0)
        size = _size_of(first, start, end)
        if size > self.slice_max and end - start >= 2 * MIN_SLICE:
            # Too big for one consistent read: page 0 only told us how big. Its readings are
            # read again with the newest slice, so they are not handed out twice.
            for part_start, part_end in _split(start, end, math.ceil(size / self.slice_target)):
                yield from self._slice(part_start, part_end, attempts)
            return
        self.stats.slices += 1
        check = _Consistency(first)
        if first.readings:
            yield first.readings
        for page in self._rest(start, end, first):
            check.add(page)
            if page.readings:
                yield page.readings
        if check.consistent:
            return
        if attempts <= 1:
            raise InconsistentWindowError(
                f"Golioth's stream for {start:%Y-%m-%d %H:%M:%S}-{end:%H:%M:%S} UTC kept "
                f"changing while it was read ({check.describe()}, {self.attempts} attempts)"
            )
        self.stats.rereads += 1
        for part_start, part_end in _split(start, end, 2):
            yield from self._slice(part_start, part_end, attempts - 1)

    def _rest(self, start: datetime, end: datetime, first: Page) -> Iterator[Page]:
        """The pages after page 0, until a short page (and at least as far as `total` says).

        With a total, the pages it announces are fetched concurrently; without one, a few at a
        time ahead (an empty page past the end costs a call, a sequential read costs latency).
        """
        per_page, last, number = first.per_page, first, 1
        if first.total is not None:
            announced = math.ceil(first.total / per_page)
            for page in self.fetch_many(start, end, range(1, announced)):
                last = page
                yield page
            number = max(1, announced)
        while last.full and _wants_more(last, number, per_page):
            batch = range(number, number + (1 if last.total is not None else self.speculate))
            for page in self.fetch_many(start, end, batch):
                last, number = page, number + 1
                yield page
                if not page.full:
                    return


def _wants_more(last: Page, number: int, per_page: int) -> bool:
    # A full last page means more may follow, unless its total says page `number` is past it.
    return last.total is None or last.total > number * per_page


def _size_of(first: Page, start: datetime, end: datetime) -> int:
    """The slice's size: its total, else an estimate from page 0's density (newest first)."""
    if first.total is not None:
        return first.total
    if not first.full or not first.readings:
        return len(first.readings)
    covered = end - first.readings[0].timestamp
    if covered <= timedelta(0):
        return len(first.readings)
    return math.ceil(len(first.readings) * ((end - start) / covered))


def _split(start: datetime, end: datetime, parts: int) -> list[tuple[datetime, datetime]]:
    parts = max(2, min(parts, int((end - start) / MIN_SLICE)))
    step = (end - start) / parts
    edges = [start + step * i for i in range(parts)] + [end]
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if a < b]


class _Consistency:
    """Did a slice stay still while it was paged? Totals must agree with each other and with
    the rows read; without totals, no reading may show up on two pages."""

    def __init__(self, first: Page) -> None:
        self.totals: set[int] = {first.total} if first.total is not None else set()
        self.rows = len(first.readings)
        self.blind = first.total is None
        self.repeated = 0
        self._seen = _keys(first) if self.blind else set()

    def add(self, page: Page) -> None:
        self.rows += len(page.readings)
        if page.total is not None:
            self.totals.add(page.total)
        else:
            self.blind = True
        if self.blind:
            # Any earlier page, not just the last: a shift of more than a page repeats a
            # reading two pages on. Golioth's own doubles (two pipelines into LightDB Stream)
            # sit side by side, on one page; should a pair straddle a boundary, the re-read in
            # halves moves the boundaries.
            keys = _keys(page)
            self.repeated += len(keys & self._seen)
            self._seen |= keys

    @property
    def consistent(self) -> bool:
        if len(self.totals) > 1:
            return False
        if self.totals and not self.blind:
            return self.rows == next(iter(self.totals))
        return self.repeated == 0

    def describe(self) -> str:
        if len(self.totals) > 1:
            return f"its total went {' -> '.join(str(t) for t in sorted(self.totals))}"
        if self.totals and not self.blind:
            return f"{self.rows} rows read where its total said {next(iter(self.totals))}"
        return f"{self.repeated} readings showed up on two pages"


def _keys(page: Page) -> set[tuple[str, datetime, str]]:
    return {
        (r.device_external_id, r.timestamp, json.dumps(r.payload, sort_keys=True))
        for r in page.readings
    }
