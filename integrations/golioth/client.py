"""The Golioth Management API: devices, stream pages and counts, typed records.

Paging that survives moving data is integrations.golioth.window's; each call, with its retries,
rate limit and typed errors, is integrations.golioth.transport's.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any
from urllib.parse import quote

from integrations.golioth.api_hosts import ApiHostPolicy
from integrations.golioth.errors import (
    CountsUnsupportedError,
    MalformedResponseError,
)
from integrations.golioth.payloads import (
    BucketCount,
    DeviceRecord,
    PayloadError,
    StreamReading,
    format_time,
    parse_count_page,
    parse_device_page,
    parse_stream_page,
)
from integrations.golioth.transport import Transport
from integrations.golioth.window import Page, WindowReader, WindowStats

logger = logging.getLogger(__name__)

MAX_PER_PAGE = 100
_STREAM_FIELDS = [{"path": "time"}, {"path": "deviceId"}, {"path": "*"}]
_COUNT_FIELDS = [
    {"path": "time"},
    {"path": "deviceId"},
    {"path": "*", "alias": "count", "agg": "count"},
]


class GoliothClient:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        project_id: str,
        max_requests_per_second: float = 10.0,
        timeout: float = 15.0,
        max_retries: int = 5,
        backoff_factor: float = 0.5,
        page_size: int = 100,
        concurrency: int = 4,
        api_hosts: ApiHostPolicy | None = None,
    ) -> None:
        """`api_hosts`: where the key may go; default the deployment's settings."""
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        if not api_key:
            raise ValueError("an API key is required")
        self.base_url = base_url.rstrip("/")
        self.project_id = project_id
        self.page_size = max(1, min(page_size, MAX_PER_PAGE))
        self.concurrency = max(1, concurrency)
        self._transport = Transport(
            base_url=base_url,
            api_key=api_key,
            project_id=project_id,
            max_requests_per_second=max_requests_per_second,
            timeout=timeout,
            max_retries=max_retries,
            backoff_factor=backoff_factor,
            pool_size=self.concurrency + 2,
            api_hosts=api_hosts or ApiHostPolicy.from_settings(),
        )
        self._request = self._transport.request
        self.stats = self._transport.stats
        self._window_stats = WindowStats()

    def __repr__(self) -> str:
        return f"<GoliothClient {self.base_url} project={self.project_id}>"

    def __enter__(self) -> GoliothClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    # --- endpoints -------------------------------------------------------------------------------

    @property
    def _project_path(self) -> str:
        return f"/v1/projects/{quote(self.project_id, safe='')}"

    def get_project(self) -> dict[str, Any]:
        """The project (also the connection test: it proves the key and the project id)."""
        return _data_of(self._request("GET", self._project_path))

    def iter_devices(
        self,
        *,
        tags: list[str] | None = None,
        cohort_id: str | None = None,
        blueprint_id: str | None = None,
        enabled: bool | None = None,
        device_name: str | None = None,
        hardware_id: str | None = None,
        term: str | None = None,
    ) -> Iterator[DeviceRecord]:
        """Every device passing Golioth's own filters, one page (0-based) at a time."""
        filters = {
            "tags": tags or None,
            "cohortId": cohort_id,
            "blueprintId": blueprint_id,
            "enabled": None if enabled is None else str(enabled).lower(),
            "deviceName": device_name,
            "hardwareId": hardware_id,
            "term": term,
        }
        params = {k: v for k, v in filters.items() if v is not None}
        seen: set[str] = set()
        for page in itertools.count():
            query = {**params, "page": page, "perPage": self.page_size}
            body = self._request("GET", f"{self._project_path}/devices", params=query)
            devices = _parse(parse_device_page, body)
            # A device added while we page shifts the rest by one: it comes twice, once here.
            yield from (d for d in devices if d.external_id not in seen)
            seen.update(d.external_id for d in devices)
            total, per_page = _total_of(body), self._per_page_of(body)
            # Never trust `total` alone (a reply may lack it): a short page ends the list.
            if len(devices) < per_page or (total is not None and (page + 1) * per_page >= total):
                return

    def iter_stream_pages(
        self,
        *,
        start: datetime,
        end: datetime,
        device_ids: list[str] | None = None,
        tags: list[str] | None = None,
    ) -> Iterator[list[StreamReading]]:
        """LightDB Stream readings in [start, end) project-wide, one list per page.

        Read so that no reading is lost while Golioth's data moves (integrations.golioth.window):
        each list is sorted oldest first; a slice that moved while it was paged is read again,
        so a reading may come twice (ingest dedups), and InconsistentWindowError ends a window
        that never held still.
        """
        body = self._stream_body()
        if device_ids is not None:
            body["deviceId"] = list(device_ids)
        if tags is not None:
            body["tags"] = list(tags)
        return self._read_window(f"{self._project_path}/stream", body, start, end)

    def iter_device_stream_pages(
        self, *, device_id: str, start: datetime, end: datetime
    ) -> Iterator[list[StreamReading]]:
        """As iter_stream_pages, for one device (cheaper when a filter names only a few)."""
        path = f"{self._project_path}/devices/{quote(device_id, safe='')}/stream"
        return self._read_window(path, self._stream_body(), start, end)

    def iter_stream_counts(
        self,
        *,
        start: datetime,
        end: datetime,
        bucket: str = "1h",
        device_ids: list[str] | None = None,
        tags: list[str] | None = None,
    ) -> Iterator[BucketCount]:
        """Golioth's count of readings per device per `bucket` in [start, end).

        The aggregate query of the docs ("Querying Stream Data"): every field that is not
        aggregated (`time`, `deviceId`) groups, `timeBucket` rounds `time`. Which path to count
        for "rows" is not documented: `*` (the whole stored payload) is our guess. Counts move
        while they are read; the caller recounts what it repairs, so paging until a short page is
        enough here. One (bucket, device) sent twice keeps its larger count.
        """
        _check_window(start, end)
        body: dict[str, Any] = {
            "start": format_time(start),
            "end": format_time(end),
            "query": {"fields": _COUNT_FIELDS, "filters": [], "timeBucket": bucket},
        }
        if device_ids is not None:
            body["deviceId"] = list(device_ids)
        if tags is not None:
            body["tags"] = list(tags)
        path = f"{self._project_path}/stream"
        seen: dict[tuple[datetime, str], int] = {}
        for number in itertools.count():
            response = self._request(
                "POST", path, json_body={**body, "page": number, "perPage": self.page_size}
            )
            try:
                rows = parse_count_page(response)
            except PayloadError as exc:
                # Rows but no counts: a Golioth that ignores `agg` (the docs show it, no
                # capture does). The caller re-reads instead of trusting them.
                raise CountsUnsupportedError(
                    f"Golioth did not answer the count query with counts: {exc}"
                ) from exc
            for row in rows:
                key = (row.bucket_start, row.device_external_id)
                if row.count > seen.get(key, -1):
                    seen[key] = row.count
            total, per_page = _total_of(response), self._per_page_of(response)
            if len(rows) < per_page or (total is not None and total <= (number + 1) * per_page):
                break
        for (bucket_start, device_id), count in sorted(seen.items()):
            yield BucketCount(bucket_start, device_id, count)

    @property
    def window_stats(self) -> WindowStats:
        return self._window_stats

    def get_state(self, device_id: str, path: str = "") -> Any:
        """LightDB State (the latest document at `path`), not the history."""
        url = f"{self._project_path}/devices/{quote(device_id, safe='')}/data"
        if path.strip("/"):
            url += "/" + quote(path.strip("/"))
        return _data_of(self._request("GET", url))

    # --- paging ----------------------------------------------------------------------------------

    def _stream_body(self) -> dict[str, Any]:
        return {"query": {"fields": _STREAM_FIELDS, "filters": []}}

    def _read_window(
        self, path: str, body: dict[str, Any], start: datetime, end: datetime
    ) -> Iterator[list[StreamReading]]:
        _check_window(start, end)

        def fetch_one(a: datetime, b: datetime, page: int) -> Page:
            return self._fetch_page(path, _windowed(body, a, b), page)

        def fetch_many(a: datetime, b: datetime, pages: Iterable[int]) -> Iterator[Page]:
            return self._fetch_pages(path, _windowed(body, a, b), pages)

        reader = WindowReader(
            fetch_one, fetch_many, speculate=self.concurrency, stats=self._window_stats
        )
        return reader.read(start, end)

    def _fetch_page(self, path: str, body: dict[str, Any], page: int) -> Page:
        payload = {**body, "page": page, "perPage": self.page_size}
        response = self._request("POST", path, json_body=payload)
        readings = _parse(parse_stream_page, response)
        return Page(readings, _total_of(response), self._per_page_of(response))

    def _per_page_of(self, body: Any) -> int:
        # Page numbers count in Golioth's page size: trust the one it answers with, should it
        # ever cap ours below what we asked for.
        per_page = body.get("perPage") if isinstance(body, dict) else None
        return per_page if isinstance(per_page, int) and per_page > 0 else self.page_size

    def _fetch_pages(self, path: str, body: dict[str, Any], pages: Iterable[int]) -> Iterator[Page]:
        """Pages fetched concurrently, handed out in order, with a bounded look-ahead.

        Submit as we consume: at most 2 x concurrency pages are in flight or waiting, so memory
        stays flat however long the window.
        """
        window = 2 * self.concurrency
        todo = iter(pages)
        pending: deque[Future[Page]] = deque()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="golioth-page")
        try:
            for page in todo:
                pending.append(pool.submit(self._fetch_page, path, body, page))
                if len(pending) >= window:
                    break
            while pending:
                result = pending.popleft().result()
                next_page = next(todo, None)
                if next_page is not None:
                    pending.append(pool.submit(self._fetch_page, path, body, next_page))
                yield result
        finally:
            # On an error or an early stop, report at once: pages already on the wire finish
            # in the background (each bounded by its timeout and retries), the rest never start.
            pool.shutdown(wait=False, cancel_futures=True)


def _parse(parser: Any, body: Any) -> Any:
    try:
        return parser(body)
    except PayloadError as exc:
        raise MalformedResponseError(f"Golioth sent an unexpected response: {exc}") from exc


def _check_window(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("stream windows need aware datetimes")


def _windowed(body: dict[str, Any], start: datetime, end: datetime) -> dict[str, Any]:
    return {**body, "start": format_time(start), "end": format_time(end)}


def _data_of(body: Any) -> Any:
    if not isinstance(body, dict) or "data" not in body:
        raise MalformedResponseError("Golioth sent an unexpected response: expected {data: ...}")
    return body["data"]


def _total_of(body: Any) -> int | None:
    """The reply's `total`, None when it has none (gRPC-gateway leaves zeros out, and no stream
    reply captured shows the field: a missing total never ends the paging by itself)."""
    total = body.get("total") if isinstance(body, dict) else None
    if total is None:
        return None
    try:
        return int(total)
    except (TypeError, ValueError) as exc:
        raise MalformedResponseError(f"Golioth sent a page with total={total!r}") from exc
