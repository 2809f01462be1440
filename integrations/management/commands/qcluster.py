"""`manage.py qcluster`: django-q2's cluster, stopped within GSYNC_SHUTDOWN_GRACE_SECONDS.

The same command and options as django-q2's (this app comes first in INSTALLED_APPS). On SIGTERM
or Ctrl-C the cluster stops as django-q2 stops it (no new tasks; the workers finish the task in
hand), and besides: every task learns the cluster is stopping (integrations.shutdown), so a sync
ends between two pages, and a worker still busy when the grace period is over is killed.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django_q.cluster import Cluster
from django_q.management.commands import qcluster

from integrations import shutdown

logger = logging.getLogger("integrations.qcluster")


class GracefulCluster(Cluster):
    def sig_handler(self, signum: int, frame: FrameType | None) -> None:
        if not shutdown.requested() and self.sentinel is not None:
            grace = settings.GSYNC_SHUTDOWN_GRACE_SECONDS
            logger.info("qcluster stopping: its workers have %d s to hand back their work", grace)
            shutdown.request()
            deadline = threading.Timer(grace, _kill_workers, [self.sentinel.pid, grace])
            deadline.daemon = True
            deadline.start()
        super().sig_handler(signum, frame)


def _kill_workers(sentinel_pid: int, grace: int) -> None:
    """SIGKILL the sentinel's processes: what a worker held (a lease) frees itself later."""
    for pid in _children(sentinel_pid):
        logger.critical(
            "qcluster: process %d still running after %d s of grace; killing it", pid, grace
        )
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it finished meanwhile


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:  # gone already, or not Linux
        return []
    return [int(child) for child in text.split()]


class Command(qcluster.Command):
    def handle(self, *args: Any, **options: Any) -> None:
        settings.SECRET_KEY  # noqa: B018 - django-q2 signs tasks with it: fail now if unset
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        shutdown.prepare()  # before the cluster forks: every worker inherits the flag
        cluster = GracefulCluster()
        cluster.start()
        if options.get("run_once"):
            cluster.stop()
