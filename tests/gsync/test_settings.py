"""The Q_CLUSTER block of gsync/settings.py, loaded fresh in a subprocess per environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRINT_Q_CLUSTER = "import json, gsync.settings as s; print(json.dumps(s.Q_CLUSTER))"


def load_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GSYNC_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "-c", PRINT_Q_CLUSTER],
        cwd=ROOT,
        env={**clean, "SECRET_KEY": "settings-test", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_q_cluster_uses_the_database_broker_by_default():
    result = load_settings(GSYNC_REDIS_URL="")  # empty, even if a local .env sets it
    assert result.returncode == 0, result.stderr
    q_cluster = json.loads(result.stdout)
    assert q_cluster["orm"] == "default" and "redis" not in q_cluster
    assert q_cluster["timeout"] < q_cluster["retry"]
    assert (q_cluster["catch_up"], q_cluster["max_attempts"]) == (False, 1)


def test_q_cluster_uses_redis_when_set():
    result = load_settings(GSYNC_REDIS_URL="redis://cache.internal:6379/2")
    assert result.returncode == 0, result.stderr
    q_cluster = json.loads(result.stdout)
    assert q_cluster["redis"] == "redis://cache.internal:6379/2" and "orm" not in q_cluster


def test_q_cluster_refuses_timeout_not_below_retry():
    result = load_settings(GSYNC_TASK_TIMEOUT="600", GSYNC_TASK_RETRY="600")
    assert result.returncode != 0
    assert "GSYNC_TASK_TIMEOUT (600) must be below GSYNC_TASK_RETRY (600)" in result.stderr


PRINT_SQLITE = (
    "import json, gsync.settings as s; "
    "print(json.dumps([s.DATABASES['default']['OPTIONS']['timeout'], s.GSYNC_WEB_TIMEOUT]))"
)


def gunicorn_timeout_in_readme() -> int:
    readme = (ROOT / "README.md").read_text()
    command = next(line for line in readme.splitlines() if line.startswith(".venv/bin/gunicorn"))
    words = command.split()
    return int(words[words.index("--timeout") + 1])


def load_sqlite_timeouts(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GSYNC_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "-c", PRINT_SQLITE],
        cwd=ROOT,
        env={**clean, "SECRET_KEY": "settings-test", "DATABASE_URL": "sqlite:///x.db", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_sqlite_busy_timeout_is_below_the_web_worker_timeout():
    result = load_sqlite_timeouts()
    assert result.returncode == 0, result.stderr
    busy, web = json.loads(result.stdout)
    # A request waiting on SQLite's lock gives up (503) before gunicorn kills its worker.
    assert web == gunicorn_timeout_in_readme()
    assert busy < web - 5


def test_sqlite_busy_timeout_not_below_the_web_timeout_is_refused():
    result = load_sqlite_timeouts(GSYNC_SQLITE_TIMEOUT="30", GSYNC_WEB_TIMEOUT="30")
    assert result.returncode != 0
    assert "GSYNC_SQLITE_TIMEOUT (30" in result.stderr
    assert "GSYNC_WEB_TIMEOUT (30)" in result.stderr


def test_default_public_url_is_what_make_run_serves():
    """Issue 12: `integration show --json` said http://localhost:8000 while the admin, served by
    `make run` on 127.0.0.1:8000, said http://127.0.0.1:8000 for the same webhook."""
    addr = next(
        line.split("?=")[1].strip()
        for line in (ROOT / "Makefile").read_text().splitlines()
        if line.startswith("ADDR ?=")
    )
    result = subprocess.run(
        [sys.executable, "-c", "import gsync.settings as s; print(s.GSYNC_PUBLIC_URL)"],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("GSYNC_")},
            "SECRET_KEY": "settings-test",
            "GSYNC_PUBLIC_URL": "",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"http://{addr}"


PRINT_RETENTION = (
    "import gsync.settings as s; "
    "print(s.GSYNC_WEBHOOK_RETENTION_DAYS, s.GSYNC_ACTIVITY_RETENTION_DAYS)"
)


def load_retention(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GSYNC_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "-c", PRINT_RETENTION],
        cwd=ROOT,
        env={**clean, "SECRET_KEY": "settings-test", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_retention_defaults_are_30_days_of_deliveries_and_180_of_activity():
    result = load_retention()
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["30", "180"]


@pytest.mark.parametrize("name", ["GSYNC_WEBHOOK_RETENTION_DAYS", "GSYNC_ACTIVITY_RETENTION_DAYS"])
@pytest.mark.parametrize("days", ["0", "-1"])
def test_retention_below_one_day_is_refused(name, days):
    result = load_retention(**{name: days})
    assert result.returncode != 0
    assert f"{name} ({days}) must be 1 or more: the days its rows are kept" in result.stderr
