"""Settings for bench/bench_webhook.py: the real settings, plus a bare view's URL (bench only)."""

from gsync.settings import *  # noqa: F403

ROOT_URLCONF = "bench.webhook_urls"
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
