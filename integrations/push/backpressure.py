"""Backpressure: when the database is slow, the webhook answers 503 + Retry-After at once rather
than let requests queue in front of it (issue 13).

Three bounds, each per web process:
- a statement of the webhook waits at most GSYNC_WEBHOOK_DB_TIMEOUT seconds (PostgreSQL:
  `SET LOCAL statement_timeout` in the transaction that stores the delivery, and in the one that
  stores a synchronous delivery's reading; waiting on a lock counts). SQLite waits its busy
  timeout, GSYNC_SQLITE_TIMEOUT;
- at most GSYNC_WEBHOOK_MAX_WAITING requests wait for the database at once (threaded servers;
  a sync gunicorn worker serves one request at a time anyway);
- once a statement timed out, the process answers 503 without asking the database for the next
  GSYNC_WEBHOOK_DB_TIMEOUT seconds: a backlog in the server's listen queue drains at once, and
  one request per period finds out whether the database is back.

Nothing answered 2xx is lost: a 2xx is sent only after the delivery's transaction committed, and
a timed-out transaction stored nothing (a synchronous delivery keeps its row, failed, and the
retry's copy of the reading is stored once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import OperationalError, connection, transaction
from psycopg import errors as pg_errors

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_waiting = 0
_shedding_until = 0.0


class OverloadedError(Exception):
    """The database is too slow to take this request now: answer 503 + Retry-After."""


@contextmanager
def waiting_for_the_database() -> Iterator[None]:
    """A place among the requests this process lets wait for the database, or OverloadedError;
    a statement timing out inside turns into OverloadedError too."""
    global _waiting
    with _lock:
        if time.monotonic() < _shedding_until:
            raise OverloadedError("the database was too slow a moment ago")
        if _waiting >= settings.GSYNC_WEBHOOK_MAX_WAITING:
            raise OverloadedError("too many requests are waiting for the database")
        _waiting += 1
    try:
        yield
    except OperationalError as exc:
        if not _timed_out(exc):
            raise
        _shed(exc)
        raise OverloadedError("the database did not answer in time") from exc
    finally:
        with _lock:
            _waiting -= 1


@contextmanager
def bounded_transaction() -> Iterator[None]:
    """A transaction whose statements wait at most GSYNC_WEBHOOK_DB_TIMEOUT (PostgreSQL)."""
    with transaction.atomic():
        limit_statements()
        yield


def limit_statements() -> None:
    """Bound the statements of the enclosing transaction (PostgreSQL; SQLite has its busy
    timeout)."""
    if connection.vendor == "postgresql":
        milliseconds = int(settings.GSYNC_WEBHOOK_DB_TIMEOUT * 1000)
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL statement_timeout = {milliseconds}")


def forget() -> None:
    """Serve again at once (tests; a process that knows the database is back)."""
    global _shedding_until
    with _lock:
        _shedding_until = 0.0


def _timed_out(exc: OperationalError) -> bool:
    if isinstance(exc.__cause__, pg_errors.QueryCanceled | pg_errors.LockNotAvailable):
        return True
    return connection.vendor == "sqlite" and "database is locked" in str(exc)


def _shed(exc: OperationalError) -> None:
    global _shedding_until
    seconds = settings.GSYNC_WEBHOOK_DB_TIMEOUT
    with _lock:
        first = time.monotonic() >= _shedding_until
        _shedding_until = time.monotonic() + seconds
    if first:
        logger.warning(
            "webhook: the database did not answer within %g s (%s); answering 503 for %g s",
            seconds,
            str(exc).strip().splitlines()[0],
            seconds,
        )
