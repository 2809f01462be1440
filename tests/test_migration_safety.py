"""Upgrade safety (issue 13 point 3): this release's migrations neither rewrite nor long-lock the
big tables.

Two checks, both on PostgreSQL (SQLite rebuilds a table for most ALTERs anyway, and production
runs PostgreSQL):

- the plan: `sqlmigrate` of every migration of `integrations` and `telemetry`, read for the
  statements that rewrite a table or hold an exclusive lock while they scan it. A migration that
  shipped before, or creates its tables, is listed in REVIEWED with why it is fine.
- the upgrade: `manage.py migrate` from the previous release's last migrations to this one's, in
  its own database holding 200k readings, leaves device_telemetry_history's storage where it was
  (`pg_class.relfilenode` changes exactly when PostgreSQL rewrites a table or an index). The
  partitioning migration turns that table into the first partition of a partitioned table of
  the same name: the storage is followed by the table's oid, not its name. Its one transaction
  holding the table (telemetry 0003's `swap`) reads none of the table's rows.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader

ROOT = Path(__file__).resolve().parents[1]
APPS = ("integrations", "telemetry")
BIG_TABLES = ("device_telemetry_history", "webhook_deliveries", "integration_activity_log")
# The last migrations of the previous release: the upgrade test starts there.
PREVIOUS_RELEASE = {
    "integrations": "0009_activity_one_webhook_minute",
    "telemetry": "0002_reconcile_source",
}
# Enough rows that a rewrite or a scan would take visible time, few enough that inserting them
# stays a second or two on CI (1M readings and their six indexes take most of a minute on two
# shared cores). The verdict does not depend on the count: a rewrite changes relfilenode even on
# an empty table.
READINGS = 200_000

# Migrations whose statements (or Python) were reviewed by hand. Every new migration is checked.
REVIEWED = {
    # Initial migrations: they create the tables, so their indexes and constraints are built on
    # empty tables and lock nothing anyone waits for.
    ("integrations", "0001_initial"): "creates the tables",
    ("telemetry", "0001_initial"): "creates the tables",
    ("integrations", "0002_heartbeat"): "creates gsync_heartbeats",
    # Shipped before this release: they already ran on every database, while the tables were
    # small; rewriting a migration that ran changes nothing.
    ("integrations", "0005_activity_search_trigram"): "shipped; RunPython: trigram indexes",
    ("integrations", "0008_activity_deliveries"): "shipped; ADD COLUMN ... CHECK scans the log",
    ("integrations", "0009_activity_one_webhook_minute"): "shipped; unique index, not concurrent",
    # Data only (RunPython: sqlmigrate cannot show it), no DDL on a big table.
    ("integrations", "0004_dispatch_schedule"): "RunPython: the dispatch schedule row",
    ("integrations", "0007_default_groups"): "RunPython: two auth groups",
    # CREATE TRIGGER takes device_telemetry_history's SHARE ROW EXCLUSIVE lock for an instant
    # (no scan); the counts of the readings already stored are read an hour per transaction.
    ("telemetry", "0004_minute_counts"): "RunPython: creates the counts' triggers, no scan",
    ("telemetry", "0005_count_stored_readings"): "RunPython: reads readings, an hour a commit",
}

_BIG = "|".join(BIG_TABLES)
_ON_BIG = rf'ALTER TABLE (?:ONLY )?"?(?:{_BIG})"?\b'
# (what it does, pattern): each pattern matches one statement.
RISKS = (
    (
        "SET NOT NULL scans the whole table under an exclusive lock (add a NOT VALID check "
        "constraint, VALIDATE it, then SET NOT NULL)",
        rf"{_ON_BIG}.*\bALTER COLUMN\b.*\bSET NOT NULL\b",
    ),
    (
        "ALTER COLUMN ... TYPE rewrites the table and its indexes",
        rf"{_ON_BIG}.*\bALTER COLUMN\b.*\bTYPE\b",
    ),
    (
        "ADD COLUMN with a volatile DEFAULT rewrites the table (a constant default does not)",
        rf"{_ON_BIG}.*\bADD COLUMN\b.*\bDEFAULT\s+\(?\s*"
        r"(?:now|clock_timestamp|statement_timestamp|random|gen_random_uuid|uuid_generate_\w+"
        r"|nextval|timeofday)\s*\(",
    ),
    (
        "ADD COLUMN with a CHECK (a PositiveIntegerField) or REFERENCES (a ForeignKey) checks "
        "every row under a lock",
        rf"{_ON_BIG}.*\bADD COLUMN\b.*\b(?:CHECK|REFERENCES)\b",
    ),
    (
        "ADD CONSTRAINT without NOT VALID scans the table under a lock (add it NOT VALID, then "
        "VALIDATE CONSTRAINT)",
        rf"{_ON_BIG}.*\bADD CONSTRAINT\b(?!.*\bNOT VALID\b).*\b(?:CHECK|FOREIGN KEY)\b",
    ),
    (
        "a UNIQUE or PRIMARY KEY constraint builds its index under an exclusive lock (CREATE "
        "UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX)",
        rf"{_ON_BIG}.*\bADD CONSTRAINT\b(?!.*\bUSING INDEX\b).*\b(?:UNIQUE|PRIMARY KEY)\b",
    ),
    (
        "CREATE INDEX without CONCURRENTLY blocks every write while it builds (AddIndexConcurrently"
        " in a non-atomic migration)",
        rf'CREATE (?:UNIQUE )?INDEX (?!CONCURRENTLY\b).*\bON (?:ONLY )?"?(?:{_BIG})"?\b',
    ),
    (
        "ADD COLUMN ... NOT NULL whose default is then dropped (Django's `default=`): the previous "
        "release's processes, which do not name the column, cannot insert until they restart "
        "(keep the default in the database: `db_default=`)",
        rf"{_ON_BIG}.*\bALTER COLUMN\b.*\bDROP DEFAULT\b",
    ),
    (
        "VACUUM FULL, CLUSTER and SET TABLESPACE rewrite the table",
        rf'(?:VACUUM FULL|CLUSTER)\b.*"?(?:{_BIG})"?|{_ON_BIG}.*\bSET TABLESPACE\b',
    ),
)


def risky_statements(sql: str) -> list[str]:
    """'statement: why' for each statement of `sql` that rewrites or long-locks a big table."""
    found = []
    for statement in _statements(sql):
        for why, pattern in RISKS:
            if re.search(pattern, statement, flags=re.IGNORECASE | re.DOTALL):
                found.append(f"{statement[:160]}: {why}")
    return found


def _statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in " ".join(lines).split(";") if s.strip()]


# --- the checker itself --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        'ALTER TABLE "device_telemetry_history" ALTER COLUMN "path" SET NOT NULL;',
        'ALTER TABLE "webhook_deliveries" ALTER COLUMN "content_type" TYPE varchar(500);',
        'ALTER TABLE "integration_activity_log" ALTER COLUMN "message" SET DATA TYPE text;',
        'ALTER TABLE "device_telemetry_history" ADD COLUMN "seen" timestamptz DEFAULT now() '
        "NOT NULL;",
        'ALTER TABLE "device_telemetry_history" ADD COLUMN "uid" uuid DEFAULT '
        "(gen_random_uuid()) NOT NULL;",
        'ALTER TABLE "device_telemetry_history" ADD COLUMN "n" integer DEFAULT 0 NOT NULL '
        'CHECK ("n" >= 0);',
        'ALTER TABLE "device_telemetry_history" ADD COLUMN "batch_id" bigint NULL CONSTRAINT "b" '
        'REFERENCES "webhook_deliveries"("id") DEFERRABLE INITIALLY DEFERRED;',
        'ALTER TABLE "device_telemetry_history" ADD CONSTRAINT "fk" FOREIGN KEY ("device_id") '
        'REFERENCES "devices" ("id") DEFERRABLE INITIALLY DEFERRED;',
        'ALTER TABLE "webhook_deliveries" ADD CONSTRAINT "u" UNIQUE ("integration_id", "id");',
        'CREATE INDEX "telemetry_path" ON "device_telemetry_history" ("path");',
        'CREATE UNIQUE INDEX "x" ON "integration_activity_log" ("integration_id", "started_at") '
        "WHERE \"activity_type\" = 'webhook_received';",
        'VACUUM FULL "device_telemetry_history";',
        'ALTER TABLE "webhook_deliveries" ALTER COLUMN "device_external_id" DROP DEFAULT;',
    ],
)
def test_checker_catches_rewrites_and_long_locks(statement):
    assert risky_statements(f"BEGIN;\n--\n-- a comment\n--\n{statement}\nCOMMIT;")


@pytest.mark.parametrize(
    "statement",
    [
        'CREATE INDEX CONCURRENTLY "telemetry_path" ON "device_telemetry_history" ("path");',
        'ALTER TABLE "device_telemetry_history" ADD COLUMN "note" text NULL;',
        'ALTER TABLE "device_telemetry_history" ADD COLUMN "n" integer DEFAULT 0 NOT NULL;',
        'ALTER TABLE "device_telemetry_history" ADD CONSTRAINT "c" CHECK ("n" >= 0) NOT VALID;',
        'ALTER TABLE "device_telemetry_history" VALIDATE CONSTRAINT "c";',
        'ALTER TABLE "devices" ALTER COLUMN "name" TYPE varchar(400);',  # a small table
        'CREATE INDEX "device_name" ON "devices" ("name");',
        'DROP INDEX CONCURRENTLY IF EXISTS "telemetry_path";',
    ],
)
def test_checker_lets_safe_statements_through(statement):
    assert risky_statements(statement) == []


# --- the plan: sqlmigrate ------------------------------------------------------------------------


def postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("reads PostgreSQL's migration SQL (production runs PostgreSQL)")


def migrations_of_this_release() -> list[tuple[str, str]]:
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    return sorted(key for key in loader.disk_migrations if key[0] in APPS)


@pytest.mark.django_db
def test_no_migration_rewrites_or_long_locks_a_big_table():
    postgresql_only()
    problems = []
    for app, name in migrations_of_this_release():
        if (app, name) in REVIEWED:
            continue
        out = StringIO()
        call_command("sqlmigrate", app, name, stdout=out)
        sql = out.getvalue()
        problems += [f"{app} {name}: {risk}" for risk in risky_statements(sql)]
        if "Raw Python operation" in sql:
            problems.append(
                f"{app} {name}: RunPython, whose SQL sqlmigrate cannot show: review it and list "
                "it in REVIEWED with why it is safe"
            )
    assert problems == []


def test_reviewed_migrations_exist():
    """A renamed or squashed migration must not leave a stale exemption behind."""
    on_disk = {
        (app, path.stem) for app in APPS for path in (ROOT / app / "migrations").glob("0*.py")
    }
    assert set(REVIEWED) <= on_disk
    assert {(app, name) for app, name in PREVIOUS_RELEASE.items()} <= on_disk


# --- the upgrade: migrate on a database with readings --------------------------------------------


def server_params() -> dict[str, object]:
    db = connection.settings_dict
    return {
        "host": db["HOST"] or "127.0.0.1",
        "port": int(db["PORT"] or 5432),
        "user": db["USER"],
        "password": db["PASSWORD"] or None,
    }


@pytest.fixture
def upgrade_database() -> Iterator[str]:
    """A database of its own (dropped at the end), for migrate to run on in a subprocess."""
    postgresql_only()
    name = f"gsync_upgrade_{os.getpid()}"
    with psycopg.connect(dbname="postgres", autocommit=True, **server_params()) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **server_params()) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(database: str, *args: str) -> None:
    p = server_params()
    auth = f"{p['user']}:{p['password']}" if p["password"] else str(p["user"])
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "gsync.settings",  # as operators run it
        "DATABASE_URL": f"postgres://{auth}@{p['host']}:{p['port']}/{database}",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", *args, "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# The previous release's schema, written out: inserting through today's models would fail as soon
# as this release adds a column to one of these tables.
SEED = f"""
INSERT INTO device_integrations (name, integration_type, status, project_id, base_url,
    api_key_encrypted, api_key_hint, settings, last_sync_status, sync_error, locked_by,
    consecutive_failures, last_skip_reason, webhook_token, webhook_enabled, webhook_secrets,
    webhook_rejected_count, created_at, updated_at)
VALUES ('fleet', 'golioth', 'active', 'p', 'https://api.golioth.io', '', '', '{{}}', '', '', '',
    0, '', 'upgrade-test-token', false, '[]', 0, now(), now());
INSERT INTO devices (external_id, name, hardware_ids, tag_ids, cohort_id, blueprint_id, enabled,
    status, firmware_version, firmware, metadata, created_at, updated_at, integration_id)
SELECT 'dev-' || n, 'dev-' || n, '[]', '[]', '', '', true, 'online', '', '{{}}', '{{}}', now(),
    now(), (SELECT id FROM device_integrations)
FROM generate_series(1, 100) AS n;
INSERT INTO device_telemetry_history (path, telemetry, device_timestamp, received_at, source,
    time_exact, dedup_key, device_id, integration_id)
SELECT 'sensor', jsonb_build_object('seq', n, 'temp', 20 + n % 10),
    now() - n * interval '1 second'
        + CASE WHEN n % {READINGS // 4} = 0 THEN interval '3 years' ELSE interval '0' END,
    now(), 'sync', true, md5(n::text)::uuid,
    (SELECT min(id) FROM devices) + n % 100, (SELECT id FROM device_integrations)
FROM generate_series(1, {READINGS}) AS n;
ANALYZE device_telemetry_history;
"""


def seed(db: psycopg.Connection) -> None:
    try:
        # The rows are made to match their device and integration: checking 400k foreign keys
        # one by one would be most of the test's time. Needs a superuser, as CI's postgres is.
        db.execute("SET session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        pass
    db.execute(SEED)
    db.execute("RESET session_replication_role")


STORAGE = """
SELECT c.oid, c.relname, c.relfilenode FROM pg_class c
WHERE c.oid = %(table)s::regclass
   OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = %(table)s::regclass)
"""
STORAGE_OF = "SELECT oid, relname, relfilenode FROM pg_class WHERE oid = ANY(%(oids)s)"


def storage(cursor: psycopg.Cursor, table: str) -> dict[int, tuple[str, int]]:
    """By oid, the name and relfilenode of the table and of each of its indexes: a rewrite gives
    a relation a new relfilenode."""
    cursor.execute(STORAGE, {"table": table})
    return {oid: (name, node) for oid, name, node in cursor.fetchall()}


def storage_of(cursor: psycopg.Cursor, oids: list[int]) -> dict[int, tuple[str, int]]:
    cursor.execute(STORAGE_OF, {"oids": oids})
    return {oid: (name, node) for oid, name, node in cursor.fetchall()}


@pytest.mark.slow
def test_migrate_from_the_previous_release_does_not_rewrite_the_big_tables(upgrade_database):
    for app, name in PREVIOUS_RELEASE.items():
        manage(upgrade_database, "migrate", app, name)
    with psycopg.connect(dbname=upgrade_database, autocommit=True, **server_params()) as db:
        seed(db)
        before = {table: storage(db.cursor(), table) for table in BIG_TABLES}

    manage(upgrade_database, "migrate")

    with psycopg.connect(dbname=upgrade_database, **server_params()) as db:
        after = {table: storage_of(db.cursor(), list(before[table])) for table in BIG_TABLES}
        count = db.execute("SELECT count(*) FROM device_telemetry_history").fetchone()
        (old_table,) = [oid for oid, (name, _) in before["device_telemetry_history"].items()
                        if name == "device_telemetry_history"]  # fmt: skip
        where = db.execute(
            "SELECT c.relname, p.relname FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE c.oid = %s",
            [old_table],
        ).fetchone()
    rewritten = [
        f"{table}: {name} (now {after[table][oid][0]})"
        for table, relations in before.items()
        for oid, (name, node) in relations.items()
        if oid in after[table] and after[table][oid][1] != node
    ]
    assert rewritten == []
    # Every reading is there, those of a clock three years ahead too (moved out and back in).
    assert count == (READINGS,)
    assert where == ("device_telemetry_history_initial", "device_telemetry_history")


@pytest.mark.slow
def test_partitioning_swap_reads_no_row_of_the_existing_table(upgrade_database):
    """ATTACH PARTITION finds the indexes, foreign keys and validated range it needs, so the
    transaction that holds the table does not scan it (PostgreSQL counts scans per
    transaction in pg_stat_xact_user_tables)."""
    plan = importlib.import_module("telemetry.migrations.0003_partition_by_month")
    for app, name in PREVIOUS_RELEASE.items():
        manage(upgrade_database, "migrate", app, name)
    bound = "'2027-01-01 00:00:00+00'"
    with psycopg.connect(dbname=upgrade_database, autocommit=True, **server_params()) as db:
        seed(db)
        (old_table,) = db.execute("SELECT 'device_telemetry_history'::regclass::oid").fetchone()
        for statement in plan.prepare(bound):
            db.execute(statement)
    # A connection of its own: a session's scan counts wait a while before PostgreSQL files
    # them, so the preparation's scans (VALIDATE reads the table) would still show.
    with psycopg.connect(dbname=upgrade_database, autocommit=True, **server_params()) as db:
        with db.transaction():
            for statement in plan.swap(bound, []):
                db.execute(statement)
            scans = db.execute(
                "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relid = %s",
                [old_table],
            ).fetchone()
        partitions = db.execute(
            "SELECT count(*) FROM pg_inherits "
            "WHERE inhparent = 'device_telemetry_history'::regclass"
        ).fetchone()
    assert scans == (0, 0)
    assert partitions == (2,)  # the existing table and the default partition
