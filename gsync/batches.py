"""Deleting many rows without holding a big table: a few thousand at a time, each its own commit.

One `DELETE` of millions of rows holds their row locks (and, on SQLite, the whole database) until
it commits, bloats the WAL in one go and blocks every writer that touches those rows meanwhile.
Batches of primary keys, walked in key order, keep each statement short; a batch that commits is
kept even when a later one fails or the worker is killed, so the next run carries on from there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

BATCH_SIZE = 5000


def key_batches(rows: QuerySet[Any], *, batch_size: int = BATCH_SIZE) -> Iterator[list[Any]]:
    """The primary keys of `rows`, `batch_size` at a time, upwards.

    Each batch is a fresh `pk > last ... LIMIT` query, so none re-reads the rows the batches
    before it deleted (dead until vacuumed) and rows added meanwhile are seen.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be 1 or more (got {batch_size})")
    keys = rows.order_by("pk").values_list("pk", flat=True)
    last = None
    while batch := list((keys if last is None else keys.filter(pk__gt=last))[:batch_size]):
        yield batch
        last = batch[-1]


def delete_in_batches(
    rows: QuerySet[Any], *, batch_size: int = BATCH_SIZE, stop_at: float | None = None
) -> int:
    """Delete the rows of `rows`, `batch_size` per statement and transaction; return how many
    rows of `rows.model` went (cascades are not counted).

    `stop_at`, a `time.monotonic()` instant, ends the work after the batch that passes it: what
    is left waits for the next run.
    """
    label = rows.model._meta.label
    deleted = 0
    for batch in key_batches(rows, batch_size=batch_size):
        with transaction.atomic():
            # `rows` again, not only the keys: a row that changed since the select is judged by
            # the same rule at delete time.
            deleted += rows.filter(pk__in=batch).delete()[1].get(label, 0)
        if past(stop_at):
            break
    return deleted


def past(stop_at: float | None) -> bool:
    """Has the `time.monotonic()` instant `stop_at` passed (never, when None)?"""
    return stop_at is not None and time.monotonic() >= stop_at
