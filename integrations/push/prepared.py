"""The webhook's own statements on PostgreSQL: bound on the server and prepared, so PostgreSQL
parses and plans each once per connection, not once a request.

Django binds parameters on the client (psycopg's ClientCursor) and prepares nothing, so every
webhook made PostgreSQL parse and plan its statement again: for the synchronous webhook's one
statement (integrations.push.one_statement) that costs more than running it (pgbench on this
2-core machine: 1.50 ms a statement sent as text, 0.92 ms prepared; the queued webhook's INSERT
0.51 ms and 0.35 ms). Here the statement goes through psycopg's own cursor with `prepare=True`,
in one pipeline with `SET LOCAL statement_timeout` when integrations.push.backpressure bounds the
thread's statements: in the extended protocol the statements up to a Sync share one implicit
transaction, so the bound is the statement's alone, in the same round trip, as backpressure's
prefix makes it for Django's cursor. Django's error wrapping, health check and query log (what
tests count) are kept.

Behind a pooler that cannot keep prepared statements (PgBouncer in transaction mode before 1.21,
or without max_prepared_statements) set GSYNC_WEBHOOK_PREPARED=false: the statements then go
through Django's cursor, as on SQLite.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from integrations.push import backpressure

PREPARE_ONLY_WHEN_ASKED = 2**62


def returning_row(sql: str, params: Any) -> tuple:
    """Run one statement that returns a row (an INSERT ... RETURNING; Django's placeholders) and
    return that row."""
    db = connections[DEFAULT_DB_ALIAS]  # once: each `connection.x` is a thread-local lookup
    if db.vendor != "postgresql" or not settings.GSYNC_WEBHOOK_PREPARED:
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            return _one(cursor.fetchone(), sql)
    # What Django's cursor() does first: a connection checked once a request, opened if need be.
    db.close_if_health_check_failed()
    db.ensure_connection()
    raw = db.connection
    if raw.prepare_threshold is None:
        # Django turns psycopg's preparing off (None), which `prepare=True` cannot override; a
        # threshold never reached prepares only what asks for it. Django's own cursors bind on
        # the client, which never prepares.
        raw.prepare_threshold = PREPARE_ONLY_WHEN_ASKED
    bound = backpressure.statement_bound()
    limit = "" if bound is None else f"SET LOCAL statement_timeout = {int(bound)}"
    started = time.monotonic()
    with db.wrap_database_errors:
        with psycopg.Cursor(raw) as cursor:
            if not limit:
                cursor.execute(sql, params, prepare=True)
            else:
                with raw.pipeline():  # one round trip: SET LOCAL, the statement, Sync
                    cursor.execute(limit)
                    cursor.execute(sql, params, prepare=True)
            row = cursor.fetchone()
    if db.queries_logged:
        # One entry per round trip, as backpressure's prefix shows on Django's cursor.
        sent = f"{limit}; {sql}" if limit else sql
        db.queries_log.append({"sql": sent, "time": f"{time.monotonic() - started:.3f}"})
    return _one(row, sql)


def _one(row: tuple | None, sql: str) -> tuple:
    if row is None:
        raise RuntimeError(f"no row returned by {sql[:80]}")
    return row
