"""The simulator's data: devices and LightDB Stream readings, rendered as Golioth renders them.

Readings live in three parallel, time-sorted columns (epoch microseconds, device index, payload as a
JSON string) so a million of them cost about 100 MB, and a page is rendered by splicing the stored
JSON instead of re-encoding it. Stream query results are cached per (window, filters), so paging
through a large window is a slice per page, not a scan.
"""

from __future__ import annotations

import json
import random
import threading
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from integrations.golioth.payloads import StreamReading
from integrations.golioth.simulator.micros import from_micros, to_micros
from integrations.golioth.simulator.query import Row

_CACHE_SIZE = 8


@dataclass(slots=True)
class SimDevice:
    id: str
    name: str
    hardware_ids: list[str] = field(default_factory=list)
    tag_ids: list[str] = field(default_factory=list)
    cohort_id: str | None = None
    blueprint_id: str | None = None
    enabled: bool = True
    last_report: datetime | None = None
    firmware_version: str = ""
    created_at: datetime = field(default_factory=lambda: datetime(2025, 1, 1, tzinfo=UTC))


@dataclass(frozen=True, slots=True)
class DeviceQuery:
    """The devices list filters, as golioth-api.md §2 names them."""

    device_name: str | None = None
    hardware_id: str | None = None
    tags: tuple[str, ...] = ()
    blueprint_id: str | None = None
    cohort_id: str | None = None
    enabled: bool | None = None
    term: str | None = None

    def matches(self, device: SimDevice) -> bool:
        checks = (
            self.device_name is None or device.name == self.device_name,
            self.hardware_id is None or self.hardware_id in device.hardware_ids,
            set(self.tags) <= set(device.tag_ids),
            self.blueprint_id is None or device.blueprint_id == self.blueprint_id,
            self.cohort_id is None or device.cohort_id == self.cohort_id,
            self.enabled is None or device.enabled == self.enabled,
            self.term is None or _term_matches(self.term, device),
        )
        return all(checks)


def _term_matches(term: str, device: SimDevice) -> bool:
    needle = term.lower()
    return any(needle in text.lower() for text in [device.name, *device.hardware_ids])


def format_stream_time(micros: int, style: int, nanos: int = 0) -> str:
    """One of the time styles Golioth mixes in stream results; each parses back to the same µs.

    A reading whose time has `nanos` (its digits below the µs) is always sent with all nine
    digits, as in `2025-11-14T15:27:59.512133674Z` (golioth-api.md §3).
    """
    base = from_micros(micros).strftime("%Y-%m-%dT%H:%M:%S")
    frac = micros % 1_000_000
    if nanos:
        return f"{base}.{frac:06d}{nanos:03d}Z"
    if style == 1 and frac % 1000 == 0:
        return f"{base}.{frac // 1000:03d}Z"
    if style == 2:
        return f"{base}.{frac:06d}+00:00"
    if style == 3:
        return f"{base}.{frac:06d}000Z"
    return f"{base}.{frac:06d}Z"


def format_ms_time(value: datetime | None) -> str | None:
    """Device timestamps: Golioth sends them with milliseconds."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def device_json(device: SimDevice) -> dict[str, Any]:
    """A device object in the shape of the real capture in golioth-api.md §2."""
    last_report = format_ms_time(device.last_report)
    update: dict[str, Any] = {}
    if device.firmware_version:
        update["main"] = {
            "package": "main",
            "version": device.firmware_version,
            "target": "",
            "state": "IDLE",
            "stateCode": "0",
            "reason": "ready state",
            "reasonCode": "0",
            "time": device.created_at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "003Z",
        }
    obj: dict[str, Any] = {
        "id": device.id,
        "hardwareIds": list(device.hardware_ids),
        "name": device.name,
        "createdAt": format_ms_time(device.created_at),
        "updatedAt": format_ms_time(device.last_report or device.created_at),
        "tagIds": list(device.tag_ids),
        "data": None,
        "lastReport": last_report,
        "status": "-",
        "enabled": device.enabled,
        "metadata": {
            "update": update,
            "status": "-",
            "lastReport": last_report,
            "lastSeenOnline": last_report,
            "lastSeenOffline": None,
            "lastSettingsStatus": None,
        },
    }
    # Golioth leaves these keys out when unset, rather than sending null.
    for key, value in (("cohortId", device.cohort_id), ("blueprintId", device.blueprint_id)):
        if value:
            obj[key] = value
    return obj


class SimStore:
    """Devices and readings of one simulated project; every method is thread-safe."""

    def __init__(self) -> None:
        self.devices: dict[str, SimDevice] = {}
        self._lock = threading.RLock()
        self._dev_ids: list[str] = []
        self._dev_index: dict[str, int] = {}
        self._dev_json_ids: list[str] = []
        self._times = array("q")
        self._devs = array("I")
        self._data: list[str] = []
        # The digits below the µs of the few readings that have them, by (µs, device, payload):
        # sparse, so a million readings without them cost nothing.
        self._nanos: dict[tuple[int, int, str], int] = {}
        self._version = 0
        self._cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self._times)

    def add_device(self, device: SimDevice) -> SimDevice:
        with self._lock:
            if device.id in self.devices:
                raise ValueError(f"device {device.id} already exists")
            self.devices[device.id] = device
            self._dev_index[device.id] = len(self._dev_ids)
            self._dev_ids.append(device.id)
            self._dev_json_ids.append(json.dumps(device.id))
            self._version += 1
        return device

    def list_devices(self, query: DeviceQuery) -> list[SimDevice]:
        with self._lock:
            return [d for d in self.devices.values() if query.matches(d)]

    def add_reading(self, device_id: str, time: datetime, data: Any, nanos: int = 0) -> None:
        """Store one reading at `time`; `nanos` (0-999) are its time's digits below the µs."""
        payload = json.dumps(data, separators=(",", ":"), allow_nan=False)
        self.append_json(device_id, to_micros(time), payload, nanos)

    def append_json(self, device_id: str, micros: int, data_json: str, nanos: int = 0) -> None:
        if not 0 <= nanos < 1000:
            raise ValueError(f"nanos are the digits below the µs (0-999), got {nanos}")
        with self._lock:
            if device_id not in self._dev_index:
                raise KeyError(f"unknown device {device_id!r}: add_device() it first")
            if nanos:
                self._nanos[(micros, self._dev_index[device_id], data_json)] = nanos
            # Appends in time order are O(1); an older reading is inserted in place.
            i = len(self._times)
            if i and self._times[-1] > micros:
                i = bisect_right(self._times, micros)
            self._times.insert(i, micros)
            self._devs.insert(i, self._dev_index[device_id])
            self._data.insert(i, data_json)
            self._version += 1
            device = self.devices[device_id]
            reported = from_micros(micros)
            if device.last_report is None or device.last_report < reported:
                device.last_report = reported

    def query(
        self,
        start: int,
        end: int,
        device_ids: Iterable[str] | None = None,
        tags: Iterable[str] | None = None,
    ) -> Sequence[int]:
        """Row indices of readings in [start, end) (µs) passing the filters, oldest first."""
        ids = frozenset(device_ids) if device_ids else None
        tag_set = frozenset(tags) if tags else None
        with self._lock:
            key = (self._version, start, end, ids, tag_set)
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            lo, hi = bisect_left(self._times, start), bisect_left(self._times, end)
            matches: Sequence[int] = range(lo, hi)
            if ids is not None or tag_set is not None:
                allowed = self._allowed_indices(ids, tag_set)
                matches = array("q", (i for i in matches if self._devs[i] in allowed))
            # Results from before the last write are stale: drop them rather than let them pile up.
            for stale in [k for k in self._cache if k[0] != self._version]:
                del self._cache[stale]
            self._cache[key] = matches
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
            return matches

    def memo(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        """`compute()`, remembered until the next write: an aggregate query is computed over
        every matched reading, and a client pages it one page per call (a speed-up only; the
        answer is the same)."""
        with self._lock:
            key = (self._version, "memo", *key)
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        value = compute()
        with self._lock:
            if key[0] == self._version:
                self._cache[key] = value
                if len(self._cache) > _CACHE_SIZE:
                    self._cache.popitem(last=False)
        return value

    def _allowed_indices(self, ids: frozenset[str] | None, tags: frozenset[str] | None) -> set[int]:
        allowed = set()
        for device_id, index in self._dev_index.items():
            device = self.devices[device_id]
            if ids is not None and device_id not in ids:
                continue
            if tags is not None and not tags <= set(device.tag_ids):
                continue
            allowed.add(index)
        return allowed

    def render_page(self, matches: Sequence[int], page: int, per_page: int) -> str:
        """One page of matches, newest first, as the JSON text of the `list` array."""
        total = len(matches)
        lo, hi = max(0, total - (page + 1) * per_page), max(0, total - page * per_page)
        with self._lock:
            items = [self._render_item(matches[i]) for i in range(hi - 1, lo - 1, -1)]
        return "[" + ",".join(items) + "]"

    def _render_item(self, row: int) -> str:
        micros, dev, data = self._times[row], self._devs[row], self._data[row]
        nanos = self._nanos.get((micros, dev, data), 0) if self._nanos else 0
        time = format_stream_time(micros, (micros // 7 + dev) % 4, nanos)
        return f'{{"time":"{time}","deviceId":{self._dev_json_ids[dev]},"data":{data}}}'

    def rows(self, matches: Sequence[int]) -> list[Row]:
        """Matched readings as the query language sees them, oldest first."""
        with self._lock:
            return [
                Row(self._times[i], self._dev_ids[self._devs[i]], json.loads(self._data[i]))
                for i in matches
            ]

    def render_time(self, micros: int) -> str:
        return format_stream_time(micros, (micros // 7) % 4)

    def latest(self, device_id: str) -> Any:
        """The newest payload of a device (what LightDB State would hold), or None."""
        with self._lock:
            index = self._dev_index[device_id]
            for row in range(len(self._times) - 1, -1, -1):
                if self._devs[row] == index:
                    return json.loads(self._data[row])
        return None

    def readings(self, start: datetime | None = None, end: datetime | None = None) -> list[Any]:
        """Stored readings in [start, end) as StreamReadings, oldest first (for tests and demos)."""
        lo = to_micros(start) if start else -(2**62)
        hi = to_micros(end) if end else 2**62
        with self._lock:
            return [
                StreamReading(
                    device_external_id=self._dev_ids[self._devs[i]],
                    timestamp=from_micros(self._times[i]),
                    payload=json.loads(self._data[i]),
                )
                for i in self.query(lo, hi)
            ]


def seed_fleet(
    store: SimStore,
    rng: random.Random,
    *,
    devices: int,
    readings_per_device: int,
    start: datetime,
    end: datetime,
    tags: Sequence[str] = ("building-a", "floor-2"),
    cohorts: Sequence[str] = ("nrf9151-cell-gateways", "esp32-sensors", "field-trial"),
    never_connected: int | None = None,
) -> list[SimDevice]:
    """A deterministic fleet: tagged devices, several cohorts, a few that never connected."""
    if never_connected is None:
        never_connected = devices // 20
    fleet = [_seed_device(store, rng, i, tags, cohorts, start) for i in range(devices)]
    connected = fleet[: devices - never_connected]
    for device in fleet[len(connected) :]:
        device.firmware_version = ""
    _seed_readings(store, rng, connected, readings_per_device, start, end)
    return fleet


def _seed_device(
    store: SimStore,
    rng: random.Random,
    i: int,
    tags: Sequence[str],
    cohorts: Sequence[str],
    start: datetime,
) -> SimDevice:
    device_tags = [tag for n, tag in enumerate(tags) if i % (n + 2) == 0]
    return store.add_device(
        SimDevice(
            id=f"{rng.getrandbits(96):024x}",
            name=f"SIM{i:05d}",
            hardware_ids=[f"20250708180416-sim{i:05d}"],
            tag_ids=device_tags,
            cohort_id=cohorts[i % len(cohorts)] if cohorts and i % 4 else None,
            blueprint_id="sensor-v1" if i % 5 == 0 else None,
            enabled=i % 13 != 12,
            firmware_version=("1.2.5", "1.2.4", "1.3.0")[i % 3],
            created_at=start - timedelta(days=30, milliseconds=rng.randrange(86_400_000)),
        )
    )


def _seed_readings(
    store: SimStore,
    rng: random.Random,
    devices: list[SimDevice],
    per_device: int,
    start: datetime,
    end: datetime,
) -> None:
    if not devices or per_device <= 0:
        return
    start_us, span = to_micros(start), to_micros(end) - to_micros(start)
    slot = span // (per_device * len(devices))
    if slot < 1:
        raise ValueError("window too short for that many readings (one per microsecond at most)")
    last = start_us
    # Readings are generated in time order, so every append is O(1), even for millions.
    for n in range(per_device):
        for k, device in enumerate(devices):
            micros = start_us + (n * len(devices) + k) * slot + rng.randrange(slot)
            if k % 3 == 0:  # some devices report at whole milliseconds, as many firmwares do
                micros -= micros % 1000
            last = max(last, micros)
            temp = round(rng.gauss(21.5, 2.0), 2)
            hum = round(rng.uniform(30.0, 60.0), 1)
            store.append_json(device.id, last, f'{{"temp":{temp!r},"hum":{hum!r},"seq":{n}}}')
