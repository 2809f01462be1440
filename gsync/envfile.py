"""Write a local .env with freshly generated secrets for `make run` (never committed)."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from cryptography.fernet import Fernet


def main(path: str) -> None:
    target = Path(path)
    if target.exists():
        return
    target.write_text(
        "# Written by `make run` for this machine only; do not commit.\n"
        f"SECRET_KEY={secrets.token_urlsafe(50)}\n"
        f"GSYNC_ENCRYPTION_KEY={Fernet.generate_key().decode()}\n"
    )
    target.chmod(0o600)
    print(f"Wrote {target} with fresh SECRET_KEY and GSYNC_ENCRYPTION_KEY.")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".env")
