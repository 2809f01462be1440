"""Trigram indexes so the activity log's message search stays fast at millions of rows.

PostgreSQL only, and only where the pg_trgm extension can be created: the admin's search is a
substring match (`UPPER(message) LIKE UPPER('%...%')`), which no B-tree index serves. Elsewhere
(SQLite, or a role that may not create extensions) the search still works, just by scanning.
"""

from django.db import migrations, transaction

INDEXES = {
    "activity_message_trgm": "message",
    "activity_error_trgm": "error_message",
}


def create(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        try:
            with transaction.atomic(using=connection.alias):
                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except Exception:  # noqa: BLE001 - no privilege: keep the plain (slower) search
            return
        for name, column in INDEXES.items():
            cursor.execute(
                f"CREATE INDEX IF NOT EXISTS {name} ON integration_activity_log "
                f"USING gin ((UPPER({column}::text)) gin_trgm_ops)"
            )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name in INDEXES:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("integrations", "0004_dispatch_schedule")]
    operations = [migrations.RunPython(create, drop)]
