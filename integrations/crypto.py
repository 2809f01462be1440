"""API keys at rest: Fernet (cryptography) with keys from GSYNC_ENCRYPTION_KEY, rotatable."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionError(Exception):
    """The stored secret was encrypted with a key this deployment no longer has."""


def _fernet() -> MultiFernet:
    keys = settings.GSYNC_ENCRYPTION_KEYS
    if not keys:
        raise ImproperlyConfigured(
            "GSYNC_ENCRYPTION_KEY is not set: gsync cannot store or read API keys. "
            "Generate one with `python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`."
        )
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "GSYNC_ENCRYPTION_KEY must be 32 url-safe base64-encoded bytes (a Fernet key)."
        ) from exc


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError(
            "the stored API key cannot be decrypted with the configured GSYNC_ENCRYPTION_KEY"
        ) from exc
