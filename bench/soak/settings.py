"""Settings for the soak's processes (bench/soak): the real settings, tuned so faults heal in
seconds instead of minutes, and a django-q2 queue of their own on the shared Redis."""

import os

from gsync.settings import *  # noqa: F403

# The simulator listens on 127.0.0.1 (refused by default, see "API host allow-list").
GSYNC_API_HOSTS = [*GSYNC_API_HOSTS, "127.0.0.1"]  # noqa: F405
GSYNC_ALLOW_PRIVATE_API_HOSTS = True
# A SIGKILLed run's lease, and a task lost with its qcluster, free themselves within the run.
GSYNC_SYNC_LEASE_SECONDS = 20
GSYNC_QUEUE_STALE_SECONDS = 60
# The simulator's "timeout" fault answers after 3 s: the client gives up after 2 s and retries.
GSYNC_HTTP_TIMEOUT = 2.0
GSYNC_HTTP_BACKOFF = 0.2
# Other engineers' qclusters may share this Redis: tasks go to a list named for this run only.
Q_CLUSTER["name"] = Q_CLUSTER["cluster_name"] = f"gsync-soak-{os.environ['GSYNC_SOAK_ID']}"  # noqa: F405
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
