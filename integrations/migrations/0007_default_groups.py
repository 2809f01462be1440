"""Two groups out of the box (issue 9): "gsync operators" and "gsync viewers".

Operators edit integrations, run syncs, backfills, reconciliation and connection tests
(`run_sync`), and re-process webhook deliveries (`reprocess_webhookdelivery`). Viewers see every
gsync page and change nothing; no page shows them a secret. Neither may delete anything, nor see
django-q2's task pages (whose "resubmit" action checks no permission): that stays with
superusers. The permission lists are written out here, as of this migration: a later model gets
into a group by a later migration.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEWERS = "gsync viewers"
OPERATORS = "gsync operators"
VIEW = {
    "integrations": ["view_deviceintegration", "view_activitylog", "view_webhookdelivery"],
    "telemetry": ["view_device", "view_telemetryrecord"],
}
OPERATE = {
    "integrations": [
        "add_deviceintegration",
        "change_deviceintegration",
        "run_sync",
        "reprocess_webhookdelivery",
    ],
}
GROUPS = {
    VIEWERS: VIEW,
    OPERATORS: {app: VIEW.get(app, []) + OPERATE.get(app, []) for app in VIEW | OPERATE},
}


def create_groups(apps, schema_editor):
    alias = schema_editor.connection.alias
    # Permissions are normally made after all migrations (post_migrate): make them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0, using=alias)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, by_app in GROUPS.items():
        group, _ = Group.objects.using(alias).get_or_create(name=name)
        for app_label, codenames in by_app.items():
            permissions = Permission.objects.using(alias).filter(
                content_type__app_label=app_label, codename__in=codenames
            )
            if permissions.count() != len(codenames):
                raise RuntimeError(f"missing permissions for {name}: {app_label} {codenames}")
            group.permissions.add(*permissions)


def remove_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name__in=list(GROUPS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0006_reconcile"),
        ("telemetry", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="deviceintegration",
            options={
                "ordering": ["name"],
                "permissions": [
                    ("run_sync", "Can run syncs, backfills, reconciliation and connection tests")
                ],
            },
        ),
        migrations.AlterModelOptions(
            name="webhookdelivery",
            options={
                "ordering": ["-received_at", "-id"],
                "permissions": [
                    ("reprocess_webhookdelivery", "Can re-process webhook deliveries")
                ],
                "verbose_name_plural": "webhook deliveries",
            },
        ),
        migrations.RunPython(create_groups, remove_groups),
    ]
