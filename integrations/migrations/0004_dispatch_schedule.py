"""Create the one django-q2 dispatch schedule at migrate time (idempotent; never in ready())."""

from django.db import migrations


def create_schedule(apps, schema_editor):
    from integrations.scheduling import ensure_schedules

    ensure_schedules(schedule_model=apps.get_model("django_q", "Schedule"))


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0003_dispatch_state"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, migrations.RunPython.noop)]
