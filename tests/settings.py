"""Test settings: the real settings, with throwaway secrets so the suite runs from a clean clone."""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
# A fixed, valid Fernet key for tests only.
os.environ.setdefault("GSYNC_ENCRYPTION_KEY", "ZmRzYWZkc2FmZHNhZmRzYWZkc2FmZHNhZmRzYWZkc2E=")

from gsync.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Retries of the Golioth client back off for milliseconds, not seconds, against the simulator.
GSYNC_HTTP_BACKOFF = 0.01

# The simulator and the stub servers listen on 127.0.0.1: allowed here, explicitly (the default
# refuses it, see tests/integrations/golioth/test_api_hosts.py).
GSYNC_API_HOSTS = [*GSYNC_API_HOSTS, "127.0.0.1"]  # noqa: F405
GSYNC_ALLOW_PRIVATE_API_HOSTS = True

# Webhook tests change an integration and post at once: no cached webhook settings (the cache
# has its own test, which turns it on).
GSYNC_WEBHOOK_CONFIG_SECONDS = 0

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not the in-memory default: tests that run syncs in threads need SQLite's real
    # locking (WAL, busy timeout). The in-memory database's shared cache fails at once with
    # "database table is locked" instead of waiting. One file per process: runs don't collide.
    import tempfile

    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(tempfile.gettempdir(), f"gsync-test-{os.getpid()}.sqlite3")
    }
