"""Golioth JSON -> typed records.

Everything that knows the shape of Golioth's JSON lives here, so the client, the webhook view and
the simulator agree on one reading of it (see shared/golioth-api.md).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any


class PayloadError(ValueError):
    """Golioth sent JSON we cannot read as a device or a reading."""


_TIME_RE = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})"
    r"(?:\.(?P<frac>\d{1,9}))?"
    r"(?P<tz>Z|z|[+-]\d{2}:?\d{2})?$"
)


def parse_time(value: str) -> datetime:
    """Parse Golioth's RFC 3339 strings: 0-9 fractional digits, `Z` or an offset; keeps µs.

    A string without a zone is taken as UTC (Golioth always means UTC).
    """
    if not isinstance(value, str):
        raise PayloadError(f"expected a time string, got {type(value).__name__}")
    match = _TIME_RE.match(value.strip())
    if not match:
        raise PayloadError(f"unreadable time {value[:40]!r}")
    base = datetime.fromisoformat(match["base"].replace(" ", "T"))
    micros = int((match["frac"] or "0")[:6].ljust(6, "0"))
    tz = match["tz"]
    offset = timedelta(0)
    if tz and tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 23 or minutes > 59:
            # RFC 3339's time-offset: an hour of 00-23, a minute of 00-59 (+99:99 is days off).
            raise PayloadError(f"impossible UTC offset {tz!r} in time {value[:40]!r}")
        offset = sign * timedelta(hours=hours, minutes=minutes)
    return (base.replace(microsecond=micros) - offset).replace(tzinfo=UTC)


def parse_optional_time(value: Any) -> datetime | None:
    if value in (None, "", "-"):
        return None
    return parse_time(value)


def format_time(value: datetime) -> str:
    """The form Golioth's stream query takes for `start` and `end`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def timestamp_from_seconds(seconds: Any, nanos: Any = 0) -> datetime:
    """`{"seconds": ..., "nanos": ...}` as the inject-metadata transformer sends it: protobuf's
    Timestamp, `seconds` an integer (or its decimal text, protobuf's JSON mapping of int64),
    `nanos` 0..999,999,999. A bool is no integer; the reason names neither value, so it stays
    short whatever was sent."""
    whole = _integer(seconds)
    fraction = _integer(nanos or 0)
    if whole is None or fraction is None or not 0 <= fraction < 1_000_000_000:
        raise PayloadError("unreadable timestamp: seconds must be an integer, nanos 0..999999999")
    try:
        return datetime.fromtimestamp(whole, tz=UTC) + timedelta(microseconds=fraction // 1000)
    except (ValueError, OverflowError, OSError) as exc:
        raise PayloadError("unreadable timestamp: seconds out of range") from exc


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 15:
        return int(value)
    return None


def nest_under_path(path: str, payload: Any) -> Any:
    """What Golioth's legacy pipeline (`inject-path`) stores for `payload` sent to `path`."""
    parts = [p for p in path.strip("/").split("/") if p]
    for part in reversed(parts):
        payload = {part: payload}
    return payload


# --- records -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamReading:
    """One LightDB Stream reading as the project-wide stream query returns it."""

    device_external_id: str
    timestamp: datetime
    payload: Any
    path: str = ""


@dataclass(frozen=True, slots=True)
class FirmwarePackage:
    package: str
    version: str
    state_code: int | None
    reason_code: int | None
    time: datetime | None


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    external_id: str
    name: str
    hardware_ids: list[str] = field(default_factory=list)
    tag_ids: list[str] = field(default_factory=list)
    cohort_id: str = ""
    blueprint_id: str = ""
    enabled: bool = True
    last_report: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    firmware: dict[str, FirmwarePackage] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def firmware_version(self) -> str:
        main = self.firmware.get("main")
        return main.version if main else ""


def parse_stream_item(item: Any) -> StreamReading:
    """`{"time": ..., "deviceId": ..., "data": {...}}` from a stream query with explicit fields."""
    if not isinstance(item, dict):
        raise PayloadError("stream item is not an object")
    device_id = item.get("deviceId") or item.get("device_id")
    if not isinstance(device_id, str) or not device_id:
        raise PayloadError("stream item has no deviceId")
    if "time" not in item:
        raise PayloadError("stream item has no time")
    return StreamReading(
        device_external_id=device_id,
        timestamp=parse_time(item["time"]),
        payload=item.get("data"),
    )


def parse_stream_page(body: Any) -> list[StreamReading]:
    """One page of the stream envelope, oldest first (Golioth sends newest first)."""
    items = _list_of(body)
    return sorted((parse_stream_item(i) for i in items), key=lambda r: r.timestamp)


@dataclass(frozen=True, slots=True)
class BucketCount:
    """Golioth's count of one device's readings in one time bucket (reconciliation)."""

    bucket_start: datetime
    device_external_id: str
    count: int


def parse_count_item(item: Any) -> BucketCount:
    """`{"time": <bucket start>, "deviceId": ..., "count": n}` from the aggregate query.

    The count may come as an integer, a float (aggregates are numeric) or a numeric string
    (gRPC-gateway renders int64 as a string): all are read.
    """
    if not isinstance(item, dict):
        raise PayloadError("count row is not an object")
    device_id = item.get("deviceId") or item.get("device_id")
    if not isinstance(device_id, str) or not device_id:
        raise PayloadError("count row has no deviceId")
    if "time" not in item:
        raise PayloadError("count row has no time")
    raw = item.get("count")
    try:
        count = float(raw) if raw is not None and not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError):
        count = math.nan
    if not math.isfinite(count) or count < 0 or count != int(count):
        raise PayloadError(f"count row has count={str(raw)[:40]!r}, not a whole number")
    return BucketCount(parse_time(item["time"]), device_id, int(count))


def parse_count_page(body: Any) -> list[BucketCount]:
    return [parse_count_item(i) for i in _list_of(body)]


def parse_device(obj: Any) -> DeviceRecord:
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        raise PayloadError("device object has no id")
    raw_metadata = obj.get("metadata")
    metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
    # Golioth's own `status` is deprecated and always "-": the last report is what tells.
    last_report = (
        parse_optional_time(metadata.get("lastReport"))
        or parse_optional_time(obj.get("lastReport"))
        or parse_optional_time(metadata.get("lastSeenOnline"))
    )
    return DeviceRecord(
        external_id=obj["id"],
        name=str(obj.get("name") or obj["id"]),
        hardware_ids=[str(h) for h in obj.get("hardwareIds") or []],
        tag_ids=[str(t) for t in obj.get("tagIds") or []],
        cohort_id=str(obj.get("cohortId") or ""),
        blueprint_id=str(obj.get("blueprintId") or ""),
        enabled=bool(obj.get("enabled", True)),
        last_report=last_report,
        created_at=parse_optional_time(obj.get("createdAt")),
        updated_at=parse_optional_time(obj.get("updatedAt")),
        firmware=_parse_firmware(metadata.get("update")),
        metadata=metadata,
    )


def _parse_firmware(update: Any) -> dict[str, FirmwarePackage]:
    if not isinstance(update, dict):
        return {}
    packages = {}
    for name, info in update.items():
        if not isinstance(info, dict):
            continue
        packages[name] = FirmwarePackage(
            package=str(info.get("package") or name),
            version=str(info.get("version") or ""),
            state_code=_int_or_none(info.get("stateCode")),
            reason_code=_int_or_none(info.get("reasonCode")),
            time=_time_or_none(info.get("time")),
        )
    return packages


def parse_device_page(body: Any) -> list[DeviceRecord]:
    return [parse_device(d) for d in _list_of(body)]


_LIST_KEYS = frozenset({"list", "page", "perPage", "total"})


def _list_of(body: Any) -> list[Any]:
    # gRPC-gateway may leave out an empty list and zero numbers (even `{}`), but a body with
    # none of the list keys, such as `{"data": ...}`, is the wrong envelope, not an empty page.
    if (
        not isinstance(body, dict)
        or (body and not _LIST_KEYS & body.keys())
        or not isinstance(body.get("list", []), list)
    ):
        raise PayloadError("expected a list envelope {list, page, perPage, total}")
    return body.get("list") or []


def _int_or_none(value: Any) -> int | None:
    # Golioth sends the firmware codes as strings.
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _time_or_none(value: Any) -> datetime | None:
    try:
        return parse_optional_time(value)
    except PayloadError:
        return None
