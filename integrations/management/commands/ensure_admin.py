from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create or update the staff login from GSYNC_ADMIN_USER / GSYNC_ADMIN_PASSWORD."

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get("GSYNC_ADMIN_PASSWORD", "")
        username = os.environ.get("GSYNC_ADMIN_USER", "admin")
        if not password:
            self.stdout.write(
                "No staff login created (GSYNC_ADMIN_PASSWORD is not set). Create one with:\n"
                "  .venv/bin/python manage.py createsuperuser\n"
                "or start with GSYNC_ADMIN_PASSWORD=... make run"
            )
            return
        user, created = get_user_model().objects.get_or_create(username=username)
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        verb = "Created" if created else "Updated"
        self.stdout.write(self.style.SUCCESS(f"{verb} staff login '{username}'."))
