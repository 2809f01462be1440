"""One Golioth API call: the rate limit, bounded retries with backoff, and typed errors.

Every call of `GoliothClient` goes through `Transport.request`: a timeout, the rate limiter,
retries with backoff for what is transient (429, 5xx, timeouts, dropped connections, truncated
or garbled bodies), and one typed error for what is not. The retry loop is ours rather than
urllib3's so that retries pass through the rate limiter and every attempt is counted: the sync
asserts API budgets. The API key goes only to an allowed host, never through a redirect, and is
scrubbed from every message.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from integrations.golioth.api_hosts import ApiHostPolicy
from integrations.golioth.errors import (
    GoliothError,
    MalformedResponseError,
    UnavailableError,
    error_for_status,
    remote_text,
)

logger = logging.getLogger(__name__)

MAX_SLEEP = 60.0
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


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


class Transport:
    """An HTTP session to one Golioth API base URL, holding the key, for one client."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        project_id: str,
        max_requests_per_second: float,
        timeout: float,
        max_retries: int,
        backoff_factor: float,
        pool_size: int,
        api_hosts: ApiHostPolicy,
    ) -> None:
        api_hosts.check_url(base_url)
        self._hosts = api_hosts
        self.base_url = base_url.rstrip("/")
        self.project_id = project_id
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.backoff_factor = backoff_factor
        self.stats = ClientStats()
        self._secret = api_key
        self._limiter = RateLimiter(max_requests_per_second)
        self._jitter = random.Random()
        self._session = requests.Session()
        self._session.headers.update({"x-api-key": api_key, "Accept": "application/json"})
        # No urllib3 retries: ours count every attempt and pass through the rate limiter.
        adapter = HTTPAdapter(pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def close(self) -> None:
        self._session.close()

    def request(
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
            return _decode(response)
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


def _decode(response: requests.Response) -> Any:
    """The JSON body. Python refuses to read an integer of over 4,300 digits (CVE-2020-10735),
    and one such value in a reading failed the whole page as garbled, every retry: read as a
    float it is infinite instead, which ingest refuses for that one reading, with its reason."""
    try:
        return response.json()
    except ValueError as exc:
        if "integer string conversion" not in str(exc):
            raise
    return json.loads(response.content, parse_int=_parse_int)


def _parse_int(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return math.inf


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
