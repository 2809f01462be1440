"""API keys at rest: Fernet (cryptography) with keys from GSYNC_ENCRYPTION_KEY, rotatable."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionError(Exception):
    """The stored secret was encrypted with a key this deployment no longer has."""


class EncryptionKeyError(ImproperlyConfigured):
    """GSYNC_ENCRYPTION_KEY is missing or malformed; the message is one line staff can act on."""


KEY_HINT = (
    "Generate one with `python -c 'from cryptography.fernet import Fernet; "
    "print(Fernet.generate_key().decode())'` and set GSYNC_ENCRYPTION_KEY (`make run` writes one "
    "to .env)."
)


def key_problems() -> list[str]:
    """What is wrong with GSYNC_ENCRYPTION_KEY, one line each (empty: nothing). Never the key."""
    keys = getattr(settings, "GSYNC_ENCRYPTION_KEYS", [])
    if not keys:
        return ["GSYNC_ENCRYPTION_KEY is not set: Golioth API keys can be neither stored nor read."]
    problems = []
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            # Its position is enough to find it; the key itself is a secret.
            problems.append(
                f"GSYNC_ENCRYPTION_KEY entry {position} of {len(keys)} is not a valid Fernet "
                "key (32 url-safe base64-encoded bytes)."
            )
    return problems


def check_keys() -> None:
    """Raise EncryptionKeyError unless every configured key is usable."""
    problems = key_problems()
    if problems:
        raise EncryptionKeyError(f"{' '.join(problems)} {KEY_HINT}")


def _fernet() -> MultiFernet:
    check_keys()
    return MultiFernet([Fernet(key) for key in settings.GSYNC_ENCRYPTION_KEYS])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError(
            "the stored API key cannot be decrypted with the configured GSYNC_ENCRYPTION_KEY"
        ) from exc


def rotate(token: str) -> str:
    """`token` encrypted again with the first key (it may have been made with any of them)."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError(
            "the stored API key cannot be decrypted with the configured GSYNC_ENCRYPTION_KEY"
        ) from exc
