"""Webhook deliveries' HTTP status answered and device, for the deliveries list (issue 12).

The status is nullable, the device a constant '' database default: neither ADD COLUMN rewrites
the table (PostgreSQL 11+ keeps a constant default in the catalogue); old deliveries show "-". The
default stays in the database, so the previous release's processes, which do not name the column,
still store deliveries until they restart.
The device's index is built CONCURRENTLY on PostgreSQL (non-atomic migration), as 0010's is.
"""

from importlib import import_module

from django.db import migrations, models

AddIndexConcurrentlyOnPostgres = import_module(
    "integrations.migrations.0010_queued_deliveries"
).AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("integrations", "0010_queued_deliveries")]

    operations = [
        migrations.AddField(
            model_name="webhookdelivery",
            name="response_status",
            field=models.SmallIntegerField(
                blank=True,
                help_text="What the webhook answered the sender.",
                null=True,
                verbose_name="HTTP status",
            ),
        ),
        migrations.AddField(
            model_name="webhookdelivery",
            name="device_external_id",
            field=models.CharField(
                blank=True,
                db_default="",
                help_text="The reading's Golioth device id.",
                max_length=64,
                verbose_name="device",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="webhookdelivery",
            index=models.Index(fields=["device_external_id"], name="delivery_device"),
        ),
    ]
