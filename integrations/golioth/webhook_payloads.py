"""Golioth webhook bodies -> one reading (or a reason it is not one).

Three shapes arrive (shared/golioth-api.md §4): the plain payload with CloudEvents `Ce-*` headers,
the `inject-metadata` envelope, and the deprecated Output Streams envelope. Bodies are JSON, or CBOR
when the pipeline did not run `cbor-to-json`. Everything here is pure: bytes and headers in, a
`WebhookMessage` out, `PayloadError` (one line, safe to show the sender) for anything unreadable.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import cbor2

from integrations.golioth.payloads import (
    PayloadError,
    nest_under_path,
    parse_time,
    timestamp_from_seconds,
)

MAX_DEPTH = 64
MAX_DEVICE_ID_LENGTH = 64
MAX_PATH_LENGTH = 200
DATA_TYPE_PREFIX = "io.golioth.data.v1/"
LEGACY_STREAM = "DEVICE_STREAM_TYPE"
# Output Streams event types that are not stream readings: kept as deliveries, marked ignored.
LEGACY_OTHER = frozenset(
    {
        "UPDATE_DEVICE_STATE_TYPE",
        "DEVICE_LOG_ENTRY_TYPE",
        "DEVICE_FIRMWARE_LOG_ENTRY_TYPE",
        "TEST_EVENT_TYPE",
    }
)
ENVELOPE_KEYS = frozenset({"data", "device_id", "project_id", "timestamp", "path"})
UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
_CONTROL_TEXT = re.compile("[\x00-\x1f\ud800-\udfff]")
JSON_TYPES = frozenset({"application/json", "text/json"})
CBOR_TYPES = frozenset({"application/cbor"})
# CBOR tags read as Golioth's cbor-to-json renders them: times (0, 1), big integers (2, 3),
# decimal fractions and bigfloats (4, 5), the self-describe marker (55799). The others are refused
# as soon as they are met: with shared references (28, 29) or string references (25, 256) a
# 180-byte body expands to gigabytes (issue 9); the rest have no JSON form.
EXPANDING_CBOR_TAGS = {
    25: "string references (tags 25/256)",
    256: "string references (tags 25/256)",
    28: "shared references (tags 28/29)",
    29: "shared references (tags 28/29)",
}
# cbor2's other built-in tags (fractions, regexes, MIME, UUIDs, sets, addresses, dates).
CBOR_TAGS_WITHOUT_JSON = (30, 35, 36, 37, 52, 54, 100, 258, 260, 261, 1004)


class UnsupportedMediaType(PayloadError):
    """The body is neither JSON nor CBOR (answered 415, not 400)."""


@dataclass(frozen=True, slots=True)
class WebhookReading:
    device_external_id: str
    timestamp: datetime
    payload: Any
    path: str = ""
    time_exact: bool = True
    project_id: str = ""


@dataclass(frozen=True, slots=True)
class WebhookMessage:
    """What one delivery carries: a reading, or nothing worth storing (`ignored` says why)."""

    shape: str  # plain | inject-metadata | legacy
    reading: WebhookReading | None = None
    ignored: str = ""


def parse_webhook(
    body: bytes,
    *,
    content_type: str,
    headers: Mapping[str, str],
    received_at: datetime,
    nest_payload: bool = False,
) -> WebhookMessage:
    """Read one webhook delivery the way Golioth sends it.

    `headers` is case-insensitive (Django's `request.headers`, or a dict with title-case names).
    The device comes from the body's `device_id`, else `Ce-Source`; the time from the body's
    `timestamp`, else `Ce-Time`, else `received_at` with `time_exact=False`. With `nest_payload`
    the payload is nested under its stream path, as Golioth's legacy pipeline stores it.
    """
    document = decode_body(body, content_type=content_type)
    ce_type = (headers.get("Ce-Type") or "").strip()
    if ce_type in LEGACY_OTHER:
        return WebhookMessage("legacy", ignored=f"legacy {ce_type} event is not a stream reading")
    if ce_type == LEGACY_STREAM:
        # Output Streams: Ce-Source and Ce-Subject describe Golioth's gateway, not the device.
        legacy = _legacy_envelope(document)
        return WebhookMessage(
            "legacy",
            _reading(
                legacy,
                headers={"Ce-Time": headers.get("Ce-Time") or ""},
                received_at=received_at,
                path=_text(legacy.get("path") or "", "path").strip("/"),
                nest_payload=nest_payload,
            ),
        )
    path = _path_from_type(ce_type)
    envelope = _envelope(document, required=False)
    if envelope is not None:
        reading = _reading(
            envelope, headers=headers, received_at=received_at, path=path, nest_payload=nest_payload
        )
        return WebhookMessage("inject-metadata", reading)
    reading = _reading(
        {"data": document},
        headers=headers,
        received_at=received_at,
        path=path,
        nest_payload=nest_payload,
    )
    return WebhookMessage("plain", reading)


# --- decoding ------------------------------------------------------------------------------------


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def decode_body(body: bytes, *, content_type: str) -> Any:
    if not body:
        raise PayloadError("empty body: expected a JSON or CBOR reading")
    kind = media_type(content_type)
    if kind in CBOR_TYPES:
        return _decode_cbor(body)
    # No Content-Type at all is read as JSON: that is what every JSON sender means.
    if kind in JSON_TYPES or kind.endswith("+json") or not kind:
        return _decode_json(body)
    raise UnsupportedMediaType(
        f"unsupported Content-Type {kind[:60]!r}: send application/json or application/cbor"
    )


def _decode_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"body is not valid UTF-8 (byte {exc.start})") from None
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise PayloadError(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise PayloadError(f"JSON is nested deeper than {MAX_DEPTH} levels") from None
    except PayloadError:
        raise  # NaN or Infinity (_refuse_constant): its message says it all
    except ValueError as exc:
        # e.g. an integer of more than 4300 digits (Python's int conversion limit)
        raise PayloadError(f"malformed JSON: {str(exc)[:80]}") from None
    check_storable(document)
    return document


def _refuse_constant(name: str) -> Any:
    raise PayloadError(f"malformed JSON: {name} is not a JSON number")


def _decode_cbor(body: bytes) -> Any:
    stream = io.BytesIO(body)
    try:
        document = cbor2.CBORDecoder(
            stream,
            max_depth=MAX_DEPTH + 1,
            semantic_decoders=_CBOR_TAG_DECODERS,
            tag_hook=_refuse_unknown_tag,
        ).decode()
    except cbor2.CBORDecodeError as exc:
        if isinstance(exc.__cause__, PayloadError):
            raise exc.__cause__ from None
        if "nesting depth" in str(exc):
            raise PayloadError(f"CBOR is nested deeper than {MAX_DEPTH} levels") from None
        raise PayloadError(f"malformed CBOR: {str(exc)[:120]}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise PayloadError(f"malformed CBOR: {str(exc)[:120]}") from None
    if stream.tell() != len(body):
        raise PayloadError(
            f"malformed CBOR: {len(body) - stream.tell()} bytes after the first item"
        )
    document = _cbor_to_json(document, depth=0)
    check_storable(document, kind="CBOR")
    return document


def _refuse_tag(tag: int) -> Any:
    what = EXPANDING_CBOR_TAGS.get(tag)
    reason = f"CBOR {what} are not accepted" if what else f"CBOR tag {tag} has no JSON form"

    def refuse(value: Any, immutable: bool) -> Any:
        raise PayloadError(reason)

    return refuse


def _big_integer(*, negative: bool) -> Any:
    def decode(value: Any, immutable: bool) -> int:
        if immutable:
            # Python hashes many big integers alike: a map keyed by them costs count**2 to build.
            raise PayloadError("CBOR map key is a big integer (tag 2/3): use text or small keys")
        if not isinstance(value, bytes):
            raise PayloadError("malformed CBOR: a big integer (tag 2/3) holds no byte string")
        number = int.from_bytes(value, "big")
        return -1 - number if negative else number

    return decode


def _refuse_unknown_tag(tag: cbor2.CBORTag, immutable: bool) -> Any:
    """cbor2 >= 6 calls the hook with the tag and whether an immutable value is wanted."""
    raise PayloadError(f"CBOR tag {tag.tag} has no JSON form")


# cbor2's decoders of these tags replaced (cbor2 >= 6 calls each with the decoded content).
_CBOR_TAG_DECODERS = {
    **{tag: _refuse_tag(tag) for tag in (*EXPANDING_CBOR_TAGS, *CBOR_TAGS_WITHOUT_JSON)},
    2: _big_integer(negative=False),
    3: _big_integer(negative=True),
}


def _cbor_to_json(value: Any, *, depth: int) -> Any:
    """CBOR values as Golioth's `cbor-to-json` step renders them; refuse what JSON cannot hold."""
    if depth > MAX_DEPTH:
        raise PayloadError(f"CBOR is nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float | Decimal):
        if not math.isfinite(value):
            raise PayloadError("CBOR holds NaN or Infinity, which JSON cannot")
        return float(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_cbor_to_json(item, depth=depth + 1) for item in value]
    if isinstance(value, Mapping):
        return {_cbor_key(k): _cbor_to_json(v, depth=depth + 1) for k, v in value.items()}
    raise PayloadError(f"CBOR value of type {type(value).__name__} has no JSON form")


def _cbor_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    raise PayloadError(f"CBOR map key of type {type(key).__name__} has no JSON form")


def check_storable(document: Any, *, kind: str = "JSON") -> None:
    """Refuse what the database would choke on later (a 500 or a 503 Golioth retries forever).

    Iterative, so a hostile body cannot exhaust the stack here either. PostgreSQL's jsonb holds
    no NUL character and no lone UTF-16 surrogate, and JSON has no Infinity.
    """
    pending = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise PayloadError(f"{kind} is nested deeper than {MAX_DEPTH} levels")
            if isinstance(value, dict):
                pending.extend((key, depth) for key in value)
            children = value.values() if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children)
        elif isinstance(value, str) and UNSTORABLE_TEXT.search(value):
            raise PayloadError("text holds a NUL character or a lone surrogate (\\u0000, \\ud800)")
        elif isinstance(value, float) and not math.isfinite(value):
            raise PayloadError(f"{kind} holds a number too large to store")


# --- shapes --------------------------------------------------------------------------------------


def _legacy_envelope(document: Any) -> dict[str, Any]:
    """The envelope a legacy Output Stream always sends."""
    envelope = _envelope(document, required=True)
    if envelope is None:  # required=True raised already
        raise PayloadError("legacy DEVICE_STREAM_TYPE body is not a {data, device_id} envelope")
    return envelope


def _envelope(document: Any, *, required: bool) -> dict[str, Any] | None:
    """The `{data, device_id, project_id, timestamp}` envelope, or None for a plain payload."""
    is_envelope = (
        isinstance(document, dict)
        and "data" in document
        and "device_id" in document
        and set(document) <= ENVELOPE_KEYS
    )
    if is_envelope:
        return document
    if required:
        raise PayloadError("legacy DEVICE_STREAM_TYPE body is not a {data, device_id} envelope")
    return None


def _path_from_type(ce_type: str) -> str:
    """`io.golioth.data.v1/.s/sensor` -> `sensor`; anything else has no path."""
    if not ce_type.startswith(DATA_TYPE_PREFIX):
        return ""
    path = ce_type.removeprefix(DATA_TYPE_PREFIX).removeprefix(".s").strip("/")
    return _text(path, "Ce-Type path")


def _reading(
    envelope: dict[str, Any],
    *,
    headers: Mapping[str, str],
    received_at: datetime,
    path: str,
    nest_payload: bool,
) -> WebhookReading:
    payload = envelope["data"]
    if nest_payload and path:
        payload = nest_under_path(path, payload)
    if not isinstance(payload, dict):
        raise PayloadError(
            f"the reading is a JSON {_json_kind(payload)}, not an object: nothing to store"
        )
    device_id = envelope.get("device_id") or headers.get("Ce-Source")
    if not device_id:
        raise PayloadError("no device: neither a Ce-Source header nor a device_id in the body")
    device_id = _text(device_id, "device_id")
    if len(device_id) > MAX_DEVICE_ID_LENGTH:
        raise PayloadError(f"device_id is longer than {MAX_DEVICE_ID_LENGTH} characters")
    timestamp, exact = _reading_time(envelope.get("timestamp"), headers.get("Ce-Time"), received_at)
    return WebhookReading(
        device_external_id=device_id,
        timestamp=timestamp,
        payload=payload,
        path=path,
        time_exact=exact,
        project_id=_text(envelope.get("project_id") or headers.get("Ce-Subject") or "", "project"),
    )


def _reading_time(
    body_time: Any, ce_time: str | None, received_at: datetime
) -> tuple[datetime, bool]:
    """Body `timestamp` ({seconds, nanos} or a string), then Ce-Time, then our receive time."""
    try:
        return _exact_time(body_time, ce_time) or (received_at, False)
    except (ValueError, OverflowError) as exc:
        if isinstance(exc, PayloadError):
            raise
        raise PayloadError(f"unreadable time: {str(exc)[:80]}") from None


def _exact_time(body_time: Any, ce_time: str | None) -> tuple[datetime, bool] | None:
    if isinstance(body_time, dict):
        return timestamp_from_seconds(body_time.get("seconds"), body_time.get("nanos", 0)), True
    if isinstance(body_time, str) and body_time:
        return parse_time(body_time), True
    if body_time not in (None, ""):
        raise PayloadError(f"unreadable timestamp of type {_json_kind(body_time)}")
    if ce_time:
        return parse_time(ce_time), True
    return None


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise PayloadError(f"{name} must be text, not a JSON {_json_kind(value)}")
    value = value.strip()
    if len(value) > MAX_PATH_LENGTH or _CONTROL_TEXT.search(value):
        raise PayloadError(f"{name} is too long or holds control characters")
    return value


def _json_kind(value: Any) -> str:
    kinds = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")
