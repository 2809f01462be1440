"""One `webhook_received` entry per integration and minute (issue 10): the webhook finds or adds
its minute's entry without a lock, the loser of a race between processes reading the winner's."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("integrations", "0008_activity_deliveries")]

    operations = [
        migrations.AddConstraint(
            model_name="activitylog",
            constraint=models.UniqueConstraint(
                condition=models.Q(activity_type="webhook_received"),
                fields=("integration", "started_at"),
                name="activity_one_webhook_minute",
            ),
        ),
    ]
