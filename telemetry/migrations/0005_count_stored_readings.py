"""Count the readings stored before 0004's triggers (telemetry.counts.recount): one hour of
reading time per transaction, so no lock is held for long; `manage.py count_readings` does the
same at any time."""

from django.db import migrations

from telemetry.counts import recount


def count_stored(apps, schema_editor):
    recount()


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("telemetry", "0004_minute_counts")]

    operations = [migrations.RunPython(count_stored, migrations.RunPython.noop)]
