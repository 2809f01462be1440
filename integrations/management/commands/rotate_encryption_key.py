"""`manage.py rotate_encryption_key`: re-encrypt every stored API key with the first key of
GSYNC_ENCRYPTION_KEY, so the older keys after it can be dropped."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from integrations import crypto
from integrations.models import DeviceIntegration


class Command(BaseCommand):
    help = (
        "Re-encrypt every integration's API key with the first GSYNC_ENCRYPTION_KEY. Rotate: set "
        "GSYNC_ENCRYPTION_KEY=new,old everywhere, run this, then set it to the new key alone."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            crypto.check_keys()
        except crypto.EncryptionKeyError as exc:
            raise CommandError(str(exc)) from None
        unreadable, done = [], 0
        with transaction.atomic():
            integrations = DeviceIntegration.objects.select_for_update().exclude(
                api_key_encrypted=""
            )
            for integration in integrations.only("name", "api_key_encrypted"):
                try:
                    integration.api_key_encrypted = crypto.rotate(integration.api_key_encrypted)
                except crypto.DecryptionError:
                    unreadable.append(integration.name)
                    continue
                integration.save(update_fields=["api_key_encrypted"])
                done += 1
            if unreadable:
                names = ", ".join(repr(name) for name in unreadable)
                raise CommandError(
                    f"Nothing changed: no configured key decrypts the API key of {names}; add "
                    "the key it was stored with to GSYNC_ENCRYPTION_KEY, or enter its API key "
                    "again in the admin."
                )
        self.stdout.write(f"Re-encrypted {done} API keys with the first GSYNC_ENCRYPTION_KEY.")
