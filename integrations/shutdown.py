"""A qcluster's shutdown, as its tasks see it: "stop between pages, the cluster is going down".

django-q2 on SIGTERM (or Ctrl-C) to a qcluster's main process stops handing out tasks and waits,
with no time limit, for each worker to finish the task in hand; the worker itself hears nothing.
A sync of a long window would then run on until the service manager kills it, and its lease
would hold the integration for GSYNC_SYNC_LEASE_SECONDS. So gsync's `qcluster` command makes one
flag before the cluster forks its processes (every worker inherits it), sets it on the signal,
and gives the workers GSYNC_SHUTDOWN_GRACE_SECONDS: a sync checks the flag between pages, stores
what it holds, frees its lease and ends; a worker still busy when the grace runs out is killed,
which the lease and the cursor already survive (README "Restarts and upgrades").
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Event

_stopping: Event | None = None


class ShutdownRequestedError(RuntimeError):
    """The qcluster is stopping: the run ends between two pages, keeping what it stored."""


def prepare() -> None:
    """Make the flag; call in the qcluster's main process before it forks its workers."""
    global _stopping
    _stopping = multiprocessing.get_context("fork").Event()


def request() -> None:
    if _stopping is not None:
        _stopping.set()


def requested() -> bool:
    """True in a qcluster worker once its cluster was told to stop; False everywhere else
    (web processes, runsync, tests calling the tasks directly)."""
    return _stopping is not None and _stopping.is_set()


def check() -> None:
    """Raise ShutdownRequestedError if the cluster is stopping: call it between pages."""
    if requested():
        raise ShutdownRequestedError("the qcluster was stopped (SIGTERM) while this run worked")
