"""gsync settings: every value comes from the environment (or `.env` when present).

See README.md "Configuration" for each variable, its default and what it does.
"""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment or in .env "
            "(`make run` writes a .env with fresh secrets on first start)."
        )
    SECRET_KEY = "insecure-development-key-only-used-when-DEBUG-is-on"  # noqa: S105

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Fernet keys for API keys at rest; several, comma-separated, to rotate (the first encrypts).
GSYNC_ENCRYPTION_KEYS = env.list("GSYNC_ENCRYPTION_KEY", default=[])
# The public base URL Golioth reaches gsync at, used to show each integration's webhook URL.
# The address `make run` serves on (ADDR), so the admin and `manage.py integration show` give
# one webhook URL.
GSYNC_PUBLIC_URL = (env.str("GSYNC_PUBLIC_URL", default="") or "http://127.0.0.1:8000").rstrip("/")
GSYNC_WEBHOOK_MAX_BYTES = env.int("GSYNC_WEBHOOK_MAX_BYTES", default=256 * 1024)
# Seconds a web process keeps an integration's webhook settings (secrets, on/off, paths) before
# reading them again: a change in the admin applies to webhooks within this. 0: every request.
GSYNC_WEBHOOK_CONFIG_SECONDS = env.float("GSYNC_WEBHOOK_CONFIG_SECONDS", default=5.0)
# The largest reading stored, in bytes of its JSON (pull and push alike); larger ones are
# rejected with their reason, and a webhook delivery is kept for a re-process.
GSYNC_MAX_READING_BYTES = env.int("GSYNC_MAX_READING_BYTES", default=64 * 1024)
# Stored webhook deliveries and activity entries older than these are pruned daily
# (integrations.pruning); each integration's readings by its own telemetryRetentionDays.
GSYNC_WEBHOOK_RETENTION_DAYS = env.int("GSYNC_WEBHOOK_RETENTION_DAYS", default=30)
GSYNC_ACTIVITY_RETENTION_DAYS = env.int("GSYNC_ACTIVITY_RETENTION_DAYS", default=180)
for _name, _days in (
    ("GSYNC_WEBHOOK_RETENTION_DAYS", GSYNC_WEBHOOK_RETENTION_DAYS),
    ("GSYNC_ACTIVITY_RETENTION_DAYS", GSYNC_ACTIVITY_RETENTION_DAYS),
):
    if _days < 1:
        raise ImproperlyConfigured(
            f"{_name} ({_days}) must be 1 or more: the days its rows are kept (0 would delete "
            "them as soon as they are stored)."
        )
# How long Golioth keeps LightDB Stream: 30 days unless the plan says more. Windows reaching
# further back are warned about (integrations.pull.retention).
# Health warns when an integration's "verified complete through" falls further behind than this.
GSYNC_VERIFY_MAX_LAG_HOURS = env.int("GSYNC_VERIFY_MAX_LAG_HOURS", default=6)
GSYNC_STREAM_RETENTION_DAYS = env.int("GSYNC_STREAM_RETENTION_DAYS", default=30)
if GSYNC_STREAM_RETENTION_DAYS < 1:
    raise ImproperlyConfigured(
        f"GSYNC_STREAM_RETENTION_DAYS ({GSYNC_STREAM_RETENTION_DAYS}) must be 1 or more: the days "
        "Golioth keeps LightDB Stream (30 unless your plan says more)."
    )
GSYNC_REDIS_URL = env.str("GSYNC_REDIS_URL", default="")
# Failed webhook authentications from one address (per integration) answered 429 after this many
# within this many seconds (integrations/push/auth_throttle.py).
GSYNC_WEBHOOK_AUTH_FAILURES = env.int("GSYNC_WEBHOOK_AUTH_FAILURES", default=20)
GSYNC_WEBHOOK_AUTH_WINDOW = env.int("GSYNC_WEBHOOK_AUTH_WINDOW", default=60)
GSYNC_WORKERS = env.int("GSYNC_WORKERS", default=2)
# The pull's Golioth client: seconds per request, retries of transient failures (429, 5xx,
# timeouts), and the backoff base in seconds (doubled per retry, with jitter).
GSYNC_HTTP_TIMEOUT = env.float("GSYNC_HTTP_TIMEOUT", default=15.0)
GSYNC_HTTP_MAX_RETRIES = env.int("GSYNC_HTTP_MAX_RETRIES", default=5)
GSYNC_HTTP_BACKOFF = env.float("GSYNC_HTTP_BACKOFF", default=0.5)
# The only hosts an API key is ever sent to (`*.example.com`: its subdomains), and whether they
# may resolve to loopback, private or link-local addresses. The demo adds its local simulator.
GSYNC_API_HOSTS = env.list("GSYNC_API_HOSTS", default=["api.golioth.io"])
GSYNC_ALLOW_PRIVATE_API_HOSTS = env.bool("GSYNC_ALLOW_PRIVATE_API_HOSTS", default=False)
if env.str("GSYNC_DEMO", default="") == "1":
    GSYNC_API_HOSTS = [*GSYNC_API_HOSTS, "127.0.0.1"]
    GSYNC_ALLOW_PRIVATE_API_HOSTS = True
# A sync run holds its integration's lease this long, renewed while it works; a dead worker's
# lease frees itself after at most this many seconds.
GSYNC_SYNC_LEASE_SECONDS = env.int("GSYNC_SYNC_LEASE_SECONDS", default=300)
# Seconds a qcluster told to stop (SIGTERM, Ctrl-C) gives its workers: a sync stops between
# pages at once; a worker still busy after this is killed (integrations/shutdown.py).
GSYNC_SHUTDOWN_GRACE_SECONDS = env.int("GSYNC_SHUTDOWN_GRACE_SECONDS", default=60)
if GSYNC_SHUTDOWN_GRACE_SECONDS < 1:
    raise ImproperlyConfigured(
        f"GSYNC_SHUTDOWN_GRACE_SECONDS ({GSYNC_SHUTDOWN_GRACE_SECONDS}) must be 1 or more."
    )

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Before django_q: gsync's `qcluster` command (a graceful stop) replaces django-q2's.
    "integrations",
    "django_q",
    "telemetry",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "gsync.urls"
WSGI_APPLICATION = "gsync.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
# Seconds a web worker may take on one request before the WSGI server kills it (README's
# production command passes it as gunicorn's --timeout).
GSYNC_WEB_TIMEOUT = env.int("GSYNC_WEB_TIMEOUT", default=30)
# Backpressure (integrations/push/backpressure.py): the most a webhook waits for one database
# statement (PostgreSQL's statement_timeout; SQLite waits GSYNC_SQLITE_TIMEOUT) before answering
# 503 + Retry-After, and how many webhook requests one web process lets wait for the database.
GSYNC_WEBHOOK_DB_TIMEOUT = env.float("GSYNC_WEBHOOK_DB_TIMEOUT", default=2.0)
GSYNC_WEBHOOK_MAX_WAITING = env.int("GSYNC_WEBHOOK_MAX_WAITING", default=4)
# The webhook's statements prepared on PostgreSQL (integrations/push/prepared.py): parsed and
# planned once per connection. Off behind a pooler that cannot keep prepared statements
# (PgBouncer in transaction mode before 1.21, or without max_prepared_statements).
GSYNC_WEBHOOK_PREPARED = env.bool("GSYNC_WEBHOOK_PREPARED", default=True)
if not 0 < GSYNC_WEBHOOK_DB_TIMEOUT < GSYNC_WEB_TIMEOUT or GSYNC_WEBHOOK_MAX_WAITING < 1:
    raise ImproperlyConfigured(
        f"GSYNC_WEBHOOK_DB_TIMEOUT ({GSYNC_WEBHOOK_DB_TIMEOUT:g}) must be above 0 and below "
        f"GSYNC_WEB_TIMEOUT ({GSYNC_WEB_TIMEOUT}), and GSYNC_WEBHOOK_MAX_WAITING "
        f"({GSYNC_WEBHOOK_MAX_WAITING}) 1 or more."
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and runsync write at once: WAL lets readers on, the busy timeout makes writers
    # wait instead of failing, and IMMEDIATE takes the write lock at BEGIN so no transaction has to
    # upgrade a read lock mid-way ("database is locked").
    _busy = env.float("GSYNC_SQLITE_TIMEOUT", default=20.0)
    # A request still waiting for the lock when the worker is killed gets no answer at all; one
    # that gives up first answers 503 (the webhook: Retry-After, so Golioth sends it again).
    if _busy >= GSYNC_WEB_TIMEOUT:
        raise ImproperlyConfigured(
            f"GSYNC_SQLITE_TIMEOUT ({_busy:g}) must be below GSYNC_WEB_TIMEOUT "
            f"({GSYNC_WEB_TIMEOUT}), or a request waiting on a lock is killed with its worker."
        )
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "timeout": _busy,
        "transaction_mode": "IMMEDIATE",
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
# Django 6's default, now: a URL typed without a scheme is https.
FORMS_URLFIELD_ASSUME_HTTPS = True
# gsync/formats/en: one date format everywhere (2026-03-01 12:00:05).
FORMAT_MODULE_PATH = ["gsync.formats"]

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

LOGIN_URL = "admin:login"

SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# django-q2: the ORM broker by default (the same database), Redis when GSYNC_REDIS_URL is set.
# Every qcluster sharing the broker (any machine) takes tasks from the same queue; the dispatch
# schedule runs once per minute whichever cluster's scheduler sees it first (README "Scheduling").
Q_CLUSTER = {
    "name": "gsync",
    "workers": GSYNC_WORKERS,
    # A task still running after `timeout` is killed; one not acknowledged after `retry` is handed
    # out again. timeout < retry, or a slow sync would be re-delivered while it still runs.
    "timeout": env.int("GSYNC_TASK_TIMEOUT", default=1800),
    "retry": env.int("GSYNC_TASK_RETRY", default=2100),
    # One attempt: a lost sync is re-queued by the next dispatch (the cursor makes that safe),
    # never replayed blindly by the broker.
    "max_attempts": 1,
    # After downtime the dispatcher runs once, not once per missed minute.
    "catch_up": False,
    "ack_failures": True,
    "save_limit": 500,
    "poll": 1,
}
if Q_CLUSTER["timeout"] >= Q_CLUSTER["retry"]:
    raise ImproperlyConfigured(
        f"GSYNC_TASK_TIMEOUT ({Q_CLUSTER['timeout']}) must be below GSYNC_TASK_RETRY "
        f"({Q_CLUSTER['retry']}), or a slow task is handed to a second worker while it runs."
    )
if GSYNC_REDIS_URL:
    Q_CLUSTER["redis"] = GSYNC_REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
# Counts of failed webhook authentications live here: shared by every web process with Redis,
# else per process (each gunicorn worker then allows GSYNC_WEBHOOK_AUTH_FAILURES on its own).
if GSYNC_REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": GSYNC_REDIS_URL,
        }
    }

# A run the dispatcher queued that no worker started within this many seconds is queued again.
GSYNC_QUEUE_STALE_SECONDS = env.int("GSYNC_QUEUE_STALE_SECONDS", default=900)
# /healthz answers 503 when the dispatcher has not run for this long (it runs every minute).
GSYNC_HEALTH_MAX_DISPATCH_AGE = env.int("GSYNC_HEALTH_MAX_DISPATCH_AGE", default=300)
# /healthz fails when a queued webhook delivery has waited this many seconds for an ingest worker.
GSYNC_HEALTH_MAX_QUEUE_AGE = env.int("GSYNC_HEALTH_MAX_QUEUE_AGE", default=120)

# Webhook tokens and query-string values never reach a log line (gsync/redaction.py): filtered on
# the loggers that write request paths (so every handler gets the redacted text) and on the console.
_REDACTED = {"filters": ["redact"]}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "gsync.redaction.RedactSecrets"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", **_REDACTED}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.request": _REDACTED,
        # Django's own config of this logger (its handler, no propagation) is replaced here.
        "django.server": {**_REDACTED, "handlers": ["console"], "propagate": False},
        "django.security.csrf": _REDACTED,
    },
}
