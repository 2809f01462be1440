"""device_telemetry_history partitioned by month on PostgreSQL, without rewriting it (issue 11
point 3, issue 13 point 3). SQLite keeps a plain table.

The dedup key includes the reading's time, so uniqueness on (dedup_key, device_timestamp) is
still "one reading, one row", and is what a partitioned table can enforce (a unique index must
include the partition key). The primary key becomes (id, device_timestamp) in the database;
Django still knows the row by `id`, which one sequence keeps unique.

On PostgreSQL, the existing table becomes the first partition, `device_telemetry_history_initial`
(MINVALUE up to the first month boundary after today), with its storage and its indexes as they
are. First, while readers and writers go on (non-atomic, statement by statement):

1. the unique indexes the partitioned table needs, built CONCURRENTLY on the existing table;
2. the partition's range as a CHECK constraint NOT VALID (a moment's lock, no scan); the rare rows
   beyond the bound (a device clock ahead) move aside by index, then VALIDATE CONSTRAINT scans
   under a lock that lets writes go on;

then, in one short transaction holding the table: the partitioned table is built under another
name with its indexes (empty, so instant), the existing table is attached (its indexes and
foreign keys match, and the validated CHECK proves its range, so ATTACH scans nothing), the two
swap names, the partitions for the next months and the default partition are created, and the
rows moved aside come back. `lock_timeout` bounds the wait for the table: a migrate that cannot
have it within LOCK_TIMEOUT fails cleanly and can simply be run again.
"""

from datetime import UTC, datetime

from django.db import migrations, models, transaction

from telemetry.partitioning import DEFAULT, INITIAL, MONTHS_AHEAD, TABLE, add_months, month_start
from telemetry.partitioning import partition_name

LOCK_TIMEOUT = "10s"
MOVING = f"{TABLE}_moving"
RANGE = f"{INITIAL}_range"
# The existing table's indexes: the initial partition keeps them, renamed, and the partitioned
# table gets the same definitions under their Django names (the partition's attach to them).
INDEXES = (
    "device_telemetry_history_activity_id_66ddc279",
    "device_telemetry_history_device_id_d6afcde1",
    "device_telemetry_history_integration_id_73a7d888",
    "telemetry_device_latest",
    "telemetry_inexact_time",
    "telemetry_integration_time",
    "telemetry_newest",
)
INDEX_DEFINITIONS = (
    "(activity_id)",
    "(device_id)",
    "(integration_id)",
    "(device_id, device_timestamp DESC)",
    "(device_id, device_timestamp) WHERE NOT time_exact",
    "(integration_id, device_timestamp)",
    "(device_timestamp DESC, id DESC)",
)
FOREIGN_KEYS = (
    "device_telemetry_his_activity_id_66ddc279_fk_integrati FOREIGN KEY (activity_id) "
    "REFERENCES integration_activity_log(id) DEFERRABLE INITIALLY DEFERRED",
    "device_telemetry_his_integration_id_73a7d888_fk_device_in FOREIGN KEY (integration_id) "
    "REFERENCES device_integrations(id) DEFERRABLE INITIALLY DEFERRED",
    "device_telemetry_history_device_id_d6afcde1_fk_devices_id FOREIGN KEY (device_id) "
    "REFERENCES devices(id) DEFERRABLE INITIALLY DEFERRED",
)


def prepare(bound: str) -> list[str]:
    """Statements run one by one while the table stays in use; each can run again."""
    return [
        f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {INITIAL}_pkey "
        f"ON {TABLE} (id, device_timestamp)",
        f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {INITIAL}_dedup "
        f"ON {TABLE} (dedup_key, device_timestamp)",
        f"ALTER TABLE {TABLE} DROP CONSTRAINT IF EXISTS {RANGE}",
        f"ALTER TABLE {TABLE} ADD CONSTRAINT {RANGE} CHECK (device_timestamp < {bound}) NOT VALID",
        f"CREATE TABLE IF NOT EXISTS {MOVING} (LIKE {TABLE})",
        f"WITH moved AS (DELETE FROM {TABLE} WHERE device_timestamp >= {bound} RETURNING *) "
        f"INSERT INTO {MOVING} SELECT * FROM moved",
        f"ALTER TABLE {TABLE} VALIDATE CONSTRAINT {RANGE}",
    ]


def swap(bound: str, months: list[datetime]) -> list[str]:
    """Statements of the one transaction that makes the table partitioned."""
    parent = f"{TABLE}_partitioned"
    return [
        f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'",
        f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE",
        # The initial partition's own names for what it keeps.
        *(f"ALTER INDEX {name} RENAME TO {name}_initial" for name in INDEXES),
        f"ALTER TABLE {TABLE} DROP CONSTRAINT {TABLE}_pkey",
        f"ALTER TABLE {TABLE} ADD CONSTRAINT {INITIAL}_pkey PRIMARY KEY USING INDEX {INITIAL}_pkey",
        f"ALTER TABLE {TABLE} DROP CONSTRAINT {TABLE}_dedup_key_key",
        f"ALTER TABLE {TABLE} ADD CONSTRAINT {INITIAL}_dedup UNIQUE USING INDEX {INITIAL}_dedup",
        # PostgreSQL 15 has no identity columns on a partitioned table: ids come from a sequence
        # of the partitioned table's own, carrying on from the identity's.
        f"CREATE SEQUENCE {TABLE}_ids",
        f"SELECT setval('{TABLE}_ids', last_value, is_called) FROM {TABLE}_id_seq",
        f"ALTER TABLE {TABLE} ALTER COLUMN id DROP IDENTITY",
        f"ALTER SEQUENCE {TABLE}_ids RENAME TO {TABLE}_id_seq",
        f"CREATE TABLE {parent} (LIKE {TABLE}, "
        f"CONSTRAINT {TABLE}_pkey PRIMARY KEY (id, device_timestamp), "
        "CONSTRAINT telemetry_dedup UNIQUE (dedup_key, device_timestamp), "
        + ", ".join(f"CONSTRAINT {fk}" for fk in FOREIGN_KEYS)
        + ") PARTITION BY RANGE (device_timestamp)",
        f"ALTER TABLE {parent} ALTER COLUMN id SET DEFAULT nextval('{TABLE}_id_seq')",
        *(
            f"CREATE INDEX {name} ON {parent} {definition}"
            for name, definition in zip(INDEXES, INDEX_DEFINITIONS, strict=True)
        ),
        f"ALTER TABLE {parent} ATTACH PARTITION {TABLE} FOR VALUES FROM (MINVALUE) TO ({bound})",
        f"ALTER TABLE {TABLE} RENAME TO {INITIAL}",
        f"ALTER TABLE {parent} RENAME TO {TABLE}",
        f"ALTER SEQUENCE {TABLE}_id_seq OWNED BY {TABLE}.id",
        *(
            f"CREATE TABLE {partition_name(month)} PARTITION OF {TABLE} "
            f"FOR VALUES FROM ({_literal(month)}) TO ({_literal(add_months(month, 1))})"
            for month in months
        ),
        f"CREATE TABLE {DEFAULT} PARTITION OF {TABLE} DEFAULT",
        f"INSERT INTO {TABLE} SELECT * FROM {MOVING}",
        f"DROP TABLE {MOVING}",
    ]


def _literal(moment: datetime) -> str:
    return f"'{moment:%Y-%m-%d %H:%M:%S}+00'"


class PartitionOnPostgreSQL(migrations.SeparateDatabaseAndState):
    """The model's new uniqueness; on PostgreSQL made by the plan above, elsewhere by Django's
    own operations (SQLite rebuilds its table for them)."""

    reversible = False

    def __init__(self, operations):
        super().__init__(state_operations=operations, database_operations=operations)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        first = add_months(month_start(datetime.now(UTC)), 1)
        bound = _literal(first)
        for statement in prepare(bound):
            schema_editor.execute(statement)
        months = [add_months(first, n) for n in range(MONTHS_AHEAD)]
        with transaction.atomic(using=schema_editor.connection.alias):
            for statement in swap(bound, months):
                schema_editor.execute(statement)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("telemetry", "0002_reconcile_source"),
    ]

    operations = [
        PartitionOnPostgreSQL(
            [
                migrations.AlterField(
                    model_name="telemetryrecord",
                    name="dedup_key",
                    field=models.UUIDField(editable=False),
                ),
                migrations.AddConstraint(
                    model_name="telemetryrecord",
                    constraint=models.UniqueConstraint(
                        fields=("dedup_key", "device_timestamp"), name="telemetry_dedup"
                    ),
                ),
            ]
        ),
    ]
