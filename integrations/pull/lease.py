"""The per-integration lease that keeps two sync runs of one integration apart.

One conditional UPDATE takes it (free, or expired because its worker died) and the caller checks
that exactly one row changed: no SELECT FOR UPDATE, so it works the same on PostgreSQL and SQLite.
The run renews it while it works, so a long backfill keeps it and a dead worker's frees itself.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from integrations.models import ActivityLog, DeviceIntegration

DEFAULT_LEASE_SECONDS = 300
# Renewing is one UPDATE; no need to write it for every page of a fast run.
RENEW_EVERY_FRACTION = 0.1


class LeaseLostError(RuntimeError):
    """Another worker took the lease over (ours expired): this run must stop writing."""


def lease_seconds() -> int:
    return int(getattr(settings, "GSYNC_SYNC_LEASE_SECONDS", DEFAULT_LEASE_SECONDS))


class Lease:
    def __init__(self, integration_id: int, *, seconds: int | None = None) -> None:
        self.integration_id = integration_id
        self.seconds = seconds or lease_seconds()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renewed = 0.0

    def acquire(self) -> bool:
        """Take the lease if it is free or expired; True when this call got it."""
        now = timezone.now()
        taken = (
            DeviceIntegration.objects.filter(pk=self.integration_id)
            .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
            .update(locked_until=now + timedelta(seconds=self.seconds), locked_by=self.owner)
        )
        self._renewed = time.monotonic()
        return taken == 1

    def renew(self, *, force: bool = False) -> None:
        """Push the expiry forward; raises LeaseLostError when the lease is no longer ours."""
        if not force and time.monotonic() - self._renewed < self.seconds * RENEW_EVERY_FRACTION:
            return
        until = timezone.now() + timedelta(seconds=self.seconds)
        if not self._ours().update(locked_until=until):
            raise LeaseLostError(
                "the sync lease expired and another run took it over; this run stopped"
            )
        self._renewed = time.monotonic()

    def release(self, **fields: object) -> bool:
        """Free the lease, if still ours, writing `fields` in the same UPDATE."""
        return self._ours().update(locked_until=None, locked_by="", **fields) == 1

    def _ours(self) -> QuerySet[DeviceIntegration]:
        return DeviceIntegration.objects.filter(pk=self.integration_id, locked_by=self.owner)


@dataclass(frozen=True)
class Claim:
    """What a writing run (a sync, a reconcile) holds from start to end: the lease and the
    activity entry it finishes. A dry run holds neither."""

    lease: Lease
    activity: ActivityLog
