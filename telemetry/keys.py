"""What makes two readings one: canonical JSON and the dedup key, the rule every writer shares.

The pull, the push, a retried page and an overlapping window all meet here: a reading is its
integration, its device, its Golioth time in microseconds and the hash of its canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any


def canonical_json(payload: Any) -> bytes:
    """Sorted keys, no whitespace: a payload hashes the same whichever path it took."""
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def payload_digest(payload: Any) -> str:
    return canonical_digest(canonical_json(payload))


def canonical_digest(document: bytes) -> str:
    """`payload_digest` of a payload whose canonical_json is at hand (ingest encodes it once)."""
    return hashlib.sha256(document).hexdigest()


def dedup_key(
    *, integration_id: int, device_external_id: str, timestamp: datetime, payload: Any
) -> uuid.UUID:
    """One reading, one key: integration, device, Golioth time in microseconds, payload hash.

    The stream path is deliberately not part of the key: the stream query does not return it.
    """
    return dedup_key_for_digest(
        integration_id=integration_id,
        device_external_id=device_external_id,
        timestamp=timestamp,
        digest=payload_digest(payload),
    )


def dedup_key_for_digest(
    *, integration_id: int, device_external_id: str, timestamp: datetime, digest: str
) -> uuid.UUID:
    """`dedup_key` from the payload's digest (`payload_digest`), for callers that have it."""
    micros = _epoch_micros(timestamp)
    material = f"{integration_id}\x1f{device_external_id}\x1f{micros}\x1f{digest}"
    return uuid.UUID(bytes=hashlib.sha256(material.encode()).digest()[:16])


def _epoch_micros(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("naive datetime in a dedup key")
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
