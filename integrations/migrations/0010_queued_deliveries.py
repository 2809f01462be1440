"""The queued push path: a `queued` outcome, and the ingest workers' queue as a partial index.

The index is built CONCURRENTLY on PostgreSQL (non-atomic migration): webhook_deliveries keeps
taking deliveries while it builds. The choices change touches no column (Django keeps choices
out of the schema).
"""

from django.db import migrations, models

PENDING = models.Index(
    condition=models.Q(("outcome__in", ["queued", "received"])),
    fields=["id"],
    name="delivery_pending",
)


class AddIndexConcurrentlyOnPostgres(migrations.AddIndex):
    """AddIndex, CONCURRENTLY where the database can (SQLite has no such thing)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.add_index(model, self.index, concurrently=True)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.remove_index(model, self.index, concurrently=True)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("integrations", "0009_activity_one_webhook_minute")]

    operations = [
        migrations.AlterField(
            model_name="webhookdelivery",
            name="outcome",
            field=models.CharField(
                choices=[
                    ("received", "Received (not yet processed)"),
                    ("queued", "Queued (for an ingest worker)"),
                    ("processed", "Processed"),
                    ("duplicate", "Duplicate"),
                    ("ignored", "Ignored (not a reading)"),
                    ("rejected", "Rejected"),
                    ("failed", "Failed"),
                ],
                default="received",
                max_length=16,
            ),
        ),
        AddIndexConcurrentlyOnPostgres(model_name="webhookdelivery", index=PENDING),
    ]
