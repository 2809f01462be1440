"""Test settings: the real settings, with throwaway secrets so the suite runs from a clean clone."""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
# A fixed, valid Fernet key for tests only.
os.environ.setdefault("GSYNC_ENCRYPTION_KEY", "ZmRzYWZkc2FmZHNhZmRzYWZkc2FmZHNhZmRzYWZkc2E=")

from gsync.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
