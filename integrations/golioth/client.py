"""The Golioth Management API over HTTP: paging, retries, a client-side rate limit, typed errors.

Every call goes through `GoliothClient._request`: a timeout, the rate limiter, bounded retries with
backoff for what is transient (429, 5xx, timeouts, dropped connections, truncated or garbled
bodies), and one typed error for what is not. The retry loop is ours rather than urllib3's so that
retries pass through the rate limiter and every attempt is counted: the sync asserts API budgets.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from integrations.golioth.api_hosts import ApiHostError, ApiHostPolicy
from integrations.golioth.errors import (
    AuthenticationError,
    CountsUnsupportedError,
    GoliothError,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    UnavailableError,
    error_for_status,
    remote_text,
)
from integrations.golioth.payloads import (
    BucketCount,
    DeviceRecord,
    PayloadError,
    StreamReading,
    format_time,
    parse_count_page,
    parse_device,
    parse_device_page,
    parse_stream_page,
)
from integrations.golioth.window import Page, WindowReader, WindowStats

# The errors live in errors.py (for size) and are part of this module's API.
__all__ = [
    "ApiHostError",
    "AuthenticationError",
    "ClientStats",
    "GoliothClient",
    "GoliothError",
    "MalformedResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "UnavailableError",
]

logger = logging.getLogger(__name__)

MAX_PER_PAGE = 100
MAX_SLEEP = 60.0
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_STREAM_FIELDS = [{"path": "time"}, {"path": "deviceId"}, {"path": "*"}]
_COUNT_FIELDS = [
    {"path": "time"},
    {"path": "deviceId"},
    {"path": "*", "alias": "count", "agg": "count"},
]


@dataclass
class ClientStats:
    """API attempts made (`calls`) and how many of them were retries; safe across threads."""

    calls: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_call(self, *, retry: bool) -> None:
        with self._lock:
            self.calls += 1
            self.retries += int(retry)


class RateLimiter:
    """Spaces request starts at least 1/rate seconds apart, across every thread of one client."""

    def __init__(self, per_second: float) -> None:
        if not per_second > 0:
            raise ValueError("max_requests_per_second must be positive")
        self._interval = 0.0 if math.isinf(per_second) else 1.0 / per_second
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        if slot > now:
            time.sleep(slot - now)


class _Transient(Exception):
    """An attempt failed in a way worth retrying; `error` is what to raise if none is left."""

    def __init__(self, error: GoliothError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


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
        self._hosts = api_hosts or ApiHostPolicy.from_settings()
        self._hosts.check_url(base_url)
        self.base_url = base_url.rstrip("/")
        self.project_id = project_id
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.backoff_factor = backoff_factor
        self.page_size = max(1, min(page_size, MAX_PER_PAGE))
        self.concurrency = max(1, concurrency)
        self.stats = ClientStats()
        self._window_stats = WindowStats()
        self._secret = api_key
        self._limiter = RateLimiter(max_requests_per_second)
        self._jitter = random.Random()
        self._session = requests.Session()
        self._session.headers.update({"x-api-key": api_key, "Accept": "application/json"})
        # No urllib3 retries: ours count every attempt and pass through the rate limiter.
        adapter = HTTPAdapter(pool_maxsize=self.concurrency + 2, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def __repr__(self) -> str:
        return f"<GoliothClient {self.base_url} project={self.project_id}>"

    def __enter__(self) -> GoliothClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    # --- endpoints -------------------------------------------------------------------------------

    @property
    def _project_path(self) -> str:
        return f"/v1/projects/{quote(self.project_id, safe='')}"

    def get_project(self) -> dict[str, Any]:
        """The project (also the connection test: it proves the key and the project id)."""
        return _data_of(self._request("GET", self._project_path))

    def get_device(self, device_id: str) -> DeviceRecord:
        body = self._request("GET", f"{self._project_path}/devices/{quote(device_id, safe='')}")
        return _parse(parse_device, _data_of(body))

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

    # --- one call --------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
    ) -> Any:
        """One API call, retried while the failure is transient; returns the decoded JSON."""
        for attempt in range(self.max_retries + 1):
            self._limiter.acquire()
            self.stats.count_call(retry=attempt > 0)
            try:
                return self._attempt(method, path, params, json_body)
            except _Transient as failure:
                if attempt == self.max_retries:
                    raise _gave_up(failure.error, attempt + 1) from failure.__cause__
                delay = self._backoff(attempt, failure.retry_after)
                logger.warning(
                    "%s; retry %d of %d in %.2fs",
                    failure.error,
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(
        self, method: str, path: str, params: dict[str, Any] | None, json_body: Any
    ) -> Any:
        what = f"{method} {path}"
        self._check_host(what)
        try:
            # Never follow a redirect: requests would carry x-api-key to wherever it points.
            response = self._session.request(
                method,
                self.base_url + path,
                params=params,
                json=json_body,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            error: GoliothError = UnavailableError(
                f"Golioth did not answer {what} within {self.timeout:g}s"
            )
            raise _Transient(error) from exc
        except requests.exceptions.ChunkedEncodingError as exc:
            error = MalformedResponseError(f"Golioth sent a truncated body for {what}")
            raise _Transient(error) from exc
        except requests.ConnectionError as exc:
            error = UnavailableError(f"cannot reach Golioth at {self.base_url} for {what}")
            raise _Transient(error) from exc
        except requests.RequestException as exc:
            raise GoliothError(self._scrub(f"request {what} failed: {exc}")) from exc
        if response.status_code >= 300:
            self._raise_for_status(response, what)
        try:
            return response.json()
        except ValueError as exc:
            # Garbled bodies are retried: a proxy or a dropped connection, not Golioth's answer.
            error = MalformedResponseError(f"Golioth sent a body that is not JSON for {what}")
            raise _Transient(error) from exc

    def _check_host(self, what: str) -> None:
        """Before every request, not once: a name can resolve somewhere else by now. (requests
        resolves it again to connect; this narrows DNS rebinding to that gap.)"""
        try:
            self._hosts.check_addresses(self.base_url)
        except (OSError, UnicodeError) as exc:
            error = UnavailableError(f"cannot resolve the Golioth API host for {what}")
            raise _Transient(error) from exc

    def _raise_for_status(self, response: requests.Response, what: str) -> None:
        status = response.status_code
        golioth_message = self._scrub(_message_of(response))
        error = error_for_status(
            status, what=what, project_id=self.project_id, golioth_message=golioth_message
        )
        if status in _RETRY_STATUSES:
            raise _Transient(error, _retry_after(response))
        raise error

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_SLEEP)
        base = self.backoff_factor * (2**attempt)
        # Jitter spreads the retries of concurrent page fetches apart.
        return min(base * self._jitter.uniform(0.5, 1.0), MAX_SLEEP)

    def _scrub(self, text: str) -> str:
        """Never let the key into a message, whatever an error echoes back."""
        return text.replace(self._secret, "[redacted]") if self._secret else text


def _gave_up(error: GoliothError, attempts: int) -> GoliothError:
    if attempts == 1:
        return error
    return type(error)(f"{error} (gave up after {attempts} attempts)", status=error.status)


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # the other form HTTP allows: a date
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _message_of(response: requests.Response) -> str:
    """The gRPC `message` of an error body, bounded and plain (see remote_text)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    return remote_text(body.get("message"), limit=200) if isinstance(body, dict) else ""


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
