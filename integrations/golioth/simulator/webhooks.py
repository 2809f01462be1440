"""Webhook requests in the three shapes Golioth Pipelines send (golioth-api.md §4)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import cbor2

from integrations.golioth.payloads import format_time, nest_under_path
from integrations.golioth.simulator.micros import to_micros

SHAPES = ("plain", "inject-metadata", "legacy")
CONTENT_TYPES = ("application/json", "application/cbor")


@dataclass(frozen=True)
class WebhookMessage:
    headers: dict[str, str]
    body: bytes
    time: datetime
    path: str
    data: Any

    def stored_payload(self, nested: bool) -> Any:
        """The payload as LightDB Stream keeps it: as sent, or nested under its path (legacy)."""
        return nest_under_path(self.path, self.data) if nested else self.data


def build_webhook(
    *,
    project_id: str,
    device_id: str,
    data: Any,
    path: str = "sensor",
    shape: str = "plain",
    content_type: str = "application/json",
    time: datetime | None = None,
    include_ce_time: bool = True,
) -> WebhookMessage:
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}")
    if content_type not in CONTENT_TYPES:
        raise ValueError(f"content_type must be one of {CONTENT_TYPES}")
    when = (time or datetime.now(UTC)).astimezone(UTC)
    headers = _cloud_event_headers(project_id, device_id, path, shape)
    if include_ce_time:
        headers["Ce-Time"] = format_time(when)
    headers["Content-Type"] = content_type
    body_obj = data if shape == "plain" else _envelope(project_id, device_id, data, when)
    return WebhookMessage(
        headers=headers,
        body=_encode(body_obj, content_type),
        time=when,
        path=path,
        data=data,
    )


def _cloud_event_headers(project_id: str, device_id: str, path: str, shape: str) -> dict[str, str]:
    headers = {"Ce-Id": str(uuid.uuid4()), "Ce-Specversion": "1.0"}
    if shape == "legacy":
        # Legacy Output Streams: these headers name neither the device nor the project.
        headers |= {
            "Ce-Source": "golioth/app/gateway/coap",
            "Ce-Subject": "stream",
            "Ce-Type": "DEVICE_STREAM_TYPE",
        }
    else:
        headers |= {
            "Ce-Source": device_id,
            "Ce-Subject": project_id,
            "Ce-Type": f"io.golioth.data.v1/.s/{path.strip('/')}",
        }
    return headers


def _envelope(project_id: str, device_id: str, data: Any, when: datetime) -> dict[str, Any]:
    micros = to_micros(when)
    seconds, fraction = divmod(micros, 1_000_000)
    return {
        "data": data,
        "device_id": device_id,
        "project_id": project_id,
        "timestamp": {"seconds": seconds, "nanos": fraction * 1000},
    }


def _encode(obj: Any, content_type: str) -> bytes:
    if content_type == "application/cbor":
        return cbor2.dumps(obj)
    return json.dumps(obj, separators=(",", ":")).encode()
