"""What `runsync` and `reconcile` show while they run and when they end (issue 12).

On a terminal, a tqdm bar (readings, pages, rate; an ETA when a total is known) that stays on
screen when the run ends; then a short aligned table per integration. `-v 2` adds one line per
page read, on a terminal or not. `-v 0` keeps the one `key=value` line per integration that
scripts read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from django.conf import settings
from django.core.management.base import OutputWrapper
from django.urls import reverse
from tqdm import tqdm

from integrations.models import ActivityLog
from integrations.pull.outcomes import SyncProgress

# Devices named on a `-v 2` page line before "and N more".
PAGE_DEVICES_SHOWN = 3


class _BarStream:
    """tqdm writes "\\r"-terminated updates: pass them through without the newline that
    OutputWrapper adds."""

    def __init__(self, out: OutputWrapper) -> None:
        self._out = out

    def write(self, text: str) -> None:
        self._out.write(text, ending="")

    def flush(self) -> None:
        self._out.flush()


@contextmanager
def progress_reporter(
    out: OutputWrapper, *, name: str, verbosity: int
) -> Iterator[Callable[[SyncProgress], None]]:
    """A progress callback for one run: the bar on a terminal, page lines at `-v 2`."""
    # One stream object: tqdm.write clears and redraws the bars written to that same object.
    stream = _BarStream(out)
    bar = tqdm(
        desc=name,
        unit=" readings",
        file=stream,
        leave=True,  # the last state stays on screen above the summary
        disable=not out.isatty() or verbosity < 1,
        dynamic_ncols=False,
        ncols=100,
    )

    def report(p: SyncProgress) -> None:
        if verbosity >= 2 and bar.disable:
            out.write(page_line(p))
        elif verbosity >= 2:
            tqdm.write(page_line(p), file=stream)  # above the bar, which redraws
        if p.pages_total is not None:
            bar.total = p.pages_total
        bar.update(p.readings - bar.n)
        bar.set_postfix(pages=p.pages_done, refresh=False)

    try:
        yield report
    finally:
        bar.close()


def page_line(p: SyncProgress) -> str:
    devices = ", ".join(p.page_devices[:PAGE_DEVICES_SHOWN])
    if len(p.page_devices) > PAGE_DEVICES_SHOWN:
        devices += f" and {len(p.page_devices) - PAGE_DEVICES_SHOWN} more"
    span = f"{moment(p.page_start)} .. {moment(p.page_end)}" if p.page_start else "-"
    return (
        f"  page {p.pages_done}: {p.page_readings} readings, "
        f"device {devices or '-'}, {span} (total {p.readings})"
    )


def moment(value: datetime | None) -> str:
    """The project's one date format, in UTC."""
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S}" if value else "-"


def entry_row(entry: ActivityLog | None) -> str:
    if entry is None:
        return "none (dry run)"
    path = reverse("admin:integrations_activitylog_change", args=[entry.pk])
    return f"#{entry.pk}  {settings.GSYNC_PUBLIC_URL}{path}"


def table(title: str, rows: list[tuple[str, str]]) -> str:
    """`title`, then `label  value` rows with the labels aligned."""
    width = max(len(label) for label, _ in rows)
    return "\n".join([title, *(f"  {label:<{width}}  {value}" for label, value in rows)])
