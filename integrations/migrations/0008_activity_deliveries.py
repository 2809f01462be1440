"""Webhook activity entries count deliveries in their own column (issue 10), and a minute has one.

`deliveries` is added with a default (no table rewrite on PostgreSQL 11+). The webhook entries
written before it kept their delivery count in `api_calls`: it moves over. Duplicate minute
entries are merged for 0009's unique constraint; the lock the old writer took kept a minute to
one entry, so the merge should find none. The constraint is a migration of its own: PostgreSQL
builds no index in a transaction that has updated the table's referenced rows.
"""

from django.db import migrations, models
from django.db.models import Count, F, Min

WEBHOOK_TYPES = ("webhook_received", "webhook_reprocessed")


def move_delivery_counts(apps, schema_editor):
    ActivityLog = apps.get_model("integrations", "ActivityLog")
    webhook = ActivityLog.objects.filter(activity_type__in=WEBHOOK_TYPES)
    webhook.update(deliveries=F("api_calls"), api_calls=0)


def merge_duplicate_minutes(apps, schema_editor):
    ActivityLog = apps.get_model("integrations", "ActivityLog")
    TelemetryRecord = apps.get_model("telemetry", "TelemetryRecord")
    minutes = ActivityLog.objects.filter(activity_type="webhook_received")
    duplicated = (
        minutes.values("integration_id", "started_at")
        .annotate(n=Count("pk"), keep=Min("pk"))
        .filter(n__gt=1)
    )
    for group in duplicated:
        extra = minutes.filter(
            integration_id=group["integration_id"], started_at=group["started_at"]
        ).exclude(pk=group["keep"])
        TelemetryRecord.objects.filter(activity__in=extra).update(activity_id=group["keep"])
        # Filled again from the minute's deliveries by the next roll-up.
        minutes.filter(pk=group["keep"]).update(status="started", completed_at=None)
        extra.delete()


def move_delivery_counts_back(apps, schema_editor):
    ActivityLog = apps.get_model("integrations", "ActivityLog")
    webhook = ActivityLog.objects.filter(activity_type__in=WEBHOOK_TYPES)
    webhook.update(api_calls=F("deliveries"))


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0007_default_groups"),
        ("telemetry", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="activitylog",
            name="deliveries",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.RunPython(move_delivery_counts, move_delivery_counts_back),
        migrations.RunPython(merge_duplicate_minutes, migrations.RunPython.noop),
    ]
