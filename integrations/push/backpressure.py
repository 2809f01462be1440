"""Backpressure: when the database is slow, the webhook answers 503 + Retry-After at once rather
than let requests queue in front of it (issue 13).

Three bounds, each per web process:
- a statement of the webhook waits at most GSYNC_WEBHOOK_DB_TIMEOUT seconds (waiting on a lock
  counts). On PostgreSQL each statement is sent as `SET LOCAL statement_timeout = N; <statement>`
  in one query string: the two run in one implicit transaction (or the enclosing one), so the
  bound costs no round trip and never outlives the statement's transaction, even through a
  connection pooler. SQLite waits its busy timeout, GSYNC_SQLITE_TIMEOUT;
- at most GSYNC_WEBHOOK_MAX_WAITING requests wait for the database at once (threaded servers;
  a sync gunicorn worker serves one request at a time anyway);
- once a statement timed out, the process answers 503 without asking the database for the next
  GSYNC_WEBHOOK_DB_TIMEOUT seconds: a backlog in the server's listen queue drains at once, and
  one request per period finds out whether the database is back.

Nothing answered 2xx is lost: the webhook answers after the delivery's INSERT committed, and a
statement that timed out stored nothing (a synchronous delivery keeps its row, failed, and the
retry's copy of the reading is stored once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from django.conf import settings
from django.db import DatabaseError, OperationalError, connection
from psycopg import errors as pg_errors

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_waiting = 0
_shedding_until = 0.0


class OverloadedError(Exception):
    """The database is too slow to take this request now: answer 503 + Retry-After."""


@contextmanager
def waiting_for_the_database() -> Iterator[None]:
    """A place among the requests this process lets wait for the database, with every statement
    bounded, or OverloadedError; a statement timing out inside turns into OverloadedError too."""
    global _waiting
    with _lock:
        if time.monotonic() < _shedding_until:
            raise OverloadedError("the database was too slow a moment ago")
        if _waiting >= settings.GSYNC_WEBHOOK_MAX_WAITING:
            raise OverloadedError("too many requests are waiting for the database")
        _waiting += 1
    try:
        with _bounded_statements():
            yield
    except OperationalError as exc:
        if not timed_out(exc):
            raise
        _shed(exc)
        raise OverloadedError("the database did not answer in time") from exc
    finally:
        with _lock:
            _waiting -= 1


# The statement bound in force in this thread (milliseconds), for the statements that do not go
# through Django's cursor (integrations.push.prepared); None outside `waiting_for_the_database`.
_bound = threading.local()


def statement_bound() -> int | None:
    """The milliseconds each statement of this thread is bounded to now, or None."""
    return getattr(_bound, "milliseconds", None)


@contextmanager
def _bounded_statements() -> Iterator[None]:
    if connection.vendor != "postgresql":
        yield
        return
    milliseconds = int(settings.GSYNC_WEBHOOK_DB_TIMEOUT * 1000)
    prefix = f"SET LOCAL statement_timeout = {milliseconds}; "

    def bound(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        cursor = context["cursor"].cursor
        # Client-side binding (Django's default for psycopg 3) sends one query string, which
        # may hold two statements; executemany and server-side binding go unbounded.
        if many or not isinstance(cursor, psycopg.ClientCursor):
            return execute(sql, params, many, context)
        result = execute(prefix + sql, params, many, context)
        cursor.nextset()  # past the SET's empty result, to the statement's own
        return result

    _bound.milliseconds = milliseconds
    try:
        with connection.execute_wrapper(bound):
            yield
    finally:
        _bound.milliseconds = None


def forget() -> None:
    """Serve again at once (tests; a process that knows the database is back)."""
    global _shedding_until
    with _lock:
        _shedding_until = 0.0


def timed_out(exc: DatabaseError) -> bool:
    """Whether `exc` is a statement bound (or SQLite's busy timeout) running out."""
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
