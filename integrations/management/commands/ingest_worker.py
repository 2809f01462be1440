"""`manage.py ingest_worker`: store queued webhook deliveries, batch by batch, until stopped.

Run one or more per machine (`make run` starts one beside the qcluster); they share the queue
through `FOR UPDATE SKIP LOCKED` (integrations.push.queue), so nothing else coordinates them.
SIGTERM or Ctrl-C lets the batch in hand finish (one transaction, well under a second) and exits
0; a worker killed outright leaves its batch queued for the others. When the database is gone the
worker waits, backing off to 30 s, and carries on once it is back.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from integrations.models import Heartbeat
from integrations.push.minutes import forget_minute_entries
from integrations.push.queue import BATCH_SIZE, ingest_queued

logger = logging.getLogger("integrations.ingest_worker")
INGEST_BEAT = "ingest"
BEAT_EVERY = 10.0  # seconds between heartbeats
MAX_BACKOFF = 30.0


class Command(BaseCommand):
    help = "Store queued webhook deliveries until stopped (SIGTERM finishes the batch in hand)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=BATCH_SIZE, help="deliveries per batch"
        )
        parser.add_argument(
            "--poll",
            type=float,
            default=0.2,
            help="seconds to wait before looking again when the queue is empty (default 0.2)",
        )
        parser.add_argument(
            "--once", action="store_true", help="store what is queued now, then exit"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1 or options["poll"] <= 0:
            self.stderr.write("--batch-size must be at least 1 and --poll above 0")
            raise SystemExit(2)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        stored = _run(
            stop, batch_size=options["batch_size"], poll=options["poll"], once=options["once"]
        )
        if options["verbosity"] >= 1:
            self.stdout.write(f"ingest worker stopped: {stored:,} deliveries stored")


def _run(stop: threading.Event, *, batch_size: int, poll: float, once: bool) -> int:
    stored, backoff, last_beat = 0, 0.0, 0.0
    name = f"{socket.gethostname()}:{os.getpid()}"
    logger.info("ingest worker %s started (batches of %d)", name, batch_size)
    while not stop.is_set():
        try:
            done = ingest_queued(batch_size=batch_size)
            stored += done
            backoff = 0.0
            now = timezone.now().timestamp()
            if now - last_beat >= BEAT_EVERY:
                _beat(name, stored)
                last_beat = now
        except DatabaseError as exc:
            forget_minute_entries()
            close_old_connections()
            connection.close()
            backoff = min(MAX_BACKOFF, max(0.5, backoff * 2))
            logger.warning("ingest worker: database error, retrying in %.1f s: %s", backoff, exc)
            stop.wait(backoff)
            continue
        if done < batch_size:
            if once:
                break
            stop.wait(poll)  # the queue is empty: look again shortly (or stop at once)
    logger.info("ingest worker %s stopped: %d deliveries stored", name, stored)
    return stored


def _beat(name: str, stored: int) -> None:
    Heartbeat.objects.update_or_create(
        name=INGEST_BEAT,
        defaults={"beat_at": timezone.now(), "detail": {"worker": name, "stored": stored}},
    )
