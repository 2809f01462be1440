"""What a sync or a reconcile reports: to the command, the task record and the tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from integrations.golioth.payloads import StreamReading
from integrations.models import ActivityLog

Status = ActivityLog.Status


@dataclass(frozen=True)
class SyncProgress:
    """Where a run is, for a progress bar. `pages_total` is None while it is not known; the
    `page_*` fields describe the page just read (for `-v 2`)."""

    pages_done: int
    pages_total: int | None
    readings: int
    elapsed: float
    page_readings: int = 0
    page_devices: tuple[str, ...] = ()
    page_start: datetime | None = None
    page_end: datetime | None = None

    @property
    def rate(self) -> float:
        return self.readings / self.elapsed if self.elapsed > 0 else 0.0


def page_progress(
    page: list[StreamReading], *, pages_done: int, readings: int, elapsed: float
) -> SyncProgress:
    """Progress after reading `page`: the run's totals and what the page held."""
    times = [r.timestamp for r in page]
    return SyncProgress(
        pages_done,
        None,
        readings,
        elapsed,
        page_readings=len(page),
        page_devices=tuple(sorted({r.device_external_id for r in page})),
        page_start=min(times, default=None),
        page_end=max(times, default=None),
    )


@dataclass
class SyncOutcome:
    integration_id: int
    status: str
    activity: ActivityLog | None = None
    devices: int = 0
    fetched: int = 0
    inserted: int = 0
    duplicates: int = 0
    corrected: int = 0
    rejected: int = 0
    rejected_reason: str = ""
    api_calls: int = 0
    retries: int = 0
    pages: int = 0
    rereads: int = 0
    error: str = ""
    skip_reason: str | None = None
    skip_forceable: bool = False  # a forced run would not have skipped
    window_start: datetime | None = None
    window_end: datetime | None = None
    duration: float = 0.0
    dry_run: bool = False
    cursor_moved: bool = False

    @property
    def failed(self) -> bool:
        return self.status == Status.FAILED


@dataclass
class ReconcileOutcome:
    integration_id: int
    status: str
    activity: ActivityLog | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    devices: int = 0
    buckets_checked: int = 0
    buckets_missing: int = 0
    buckets_repaired: int = 0
    buckets_consistent: int = 0
    buckets_still_missing: int = 0
    readings_missing: int = 0
    recovered: int = 0
    fetched: int = 0
    duplicates: int = 0
    surplus_buckets: int = 0
    surplus_readings: int = 0
    pages: int = 0  # stream pages re-read by the repair
    api_calls: int = 0
    retries: int = 0
    fallback: str = ""
    error: str = ""
    skip_reason: str | None = None
    dry_run: bool = False
    duration: float = 0.0
    verified_through: datetime | None = None

    @property
    def failed(self) -> bool:
        return self.status == Status.FAILED

    def describe(self) -> str:
        if self.fallback:
            return (
                f"Count query refused: re-read the lookback as a backfill; {self.fetched} "
                f"readings fetched, {self.recovered} recovered, {self.api_calls} API calls"
            )
        return (
            f"{self.buckets_checked} device-hours checked, {self.buckets_missing} missing "
            f"readings ({self.readings_missing}), {self.recovered} recovered, "
            f"{self.buckets_consistent} consistent (Golioth holds doubles), "
            f"{self.surplus_buckets} with surplus ({self.surplus_readings}), "
            f"{self.api_calls} API calls"
        )
