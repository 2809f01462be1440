"""A fleet that drives the simulator in simulated time, as real fleets feed Golioth.

`FleetModel` owns N devices of a GoliothSimulator and moves their clock forward (`advance`): each
device reports on a cadence; about a tenth of the fleet is offline at any moment, buffering; a
device that comes back uploads its buffer as back-dated batches. Every message goes through
Golioth pipelines (simulator_pipelines.Router), and only what a pipeline delivers to LightDB
Stream is stored, and counted in the ground truth. Sources ([guess] where none settles it):

- Devices send data to `/.s/<path>` (docs data-routing README), JSON or CBOR: the firmware SDK
  sends CBOR, Golioth's console simulator JSON (golioth-api.md §6); a mix of both [guess: half].
  Values are those of a temperature/humidity sensor with a sequence number [guess].
- The cadence (default 10 min) and each device's phase within it are a guess; the phase carries
  nanosecond digits: a live message's time is its arrival at Golioth, which inject-metadata shows
  with nanoseconds (docs 3-transformers/3), and LightDB Stream keeps the message time
  (4-destinations/1) [guess: at ns precision; golioth-api.md §3 lists ns time strings]. The
  simulator sends those digits back in the stream's time strings (simulator_store).
- Offline devices: cellular devices lose coverage and buffer (golioth-api.md §3, §6); the share
  offline (10%) and outage lengths (30 min to 3 h) are guesses. A device back online uploads its
  buffer as JSON arrays (CBOR arrays from CBOR devices) of at most `batch_items` readings [guess:
  bounded by device memory], each item carrying its own time as `ts` in Unix milliseconds (the
  docs' batch example, 4-destinations/8); pipelines with `batch` + `extract-timestamp` store each
  item at that time (5-examples/2 "Legacy LightDB Stream"), hours after it, inside windows the
  pull has read already.
- Uploads while a run pages the stream (`reconnect_during_run`, `after_stream_calls`): run in
  the simulator's server thread right after it answers a stream query
  (GoliothSimulator.stream_hooks), so pages shift under the reader as they do on Golioth.
- SDK log lines: a CBOR map {level, module, msg} sent to `logs` (golioth-firmware-sdk
  src/log.c), every `log_every`-th report of an online device [guess]. Golioth's "Default CBOR
  Logs" pipeline (5-examples/28) is kept, as gsync's pipeline page tells operators: a correct
  set of pipelines keeps them out of LightDB Stream, so they never enter the ground truth.

The ground truth (`truth`) counts every reading delivered to LightDB Stream by gsync's dedup
key: device, time in microseconds (the digits below are dropped, as gsync parses times), and
the payload's canonical JSON. A count above 1 is a reading Golioth holds twice.
"""

from __future__ import annotations

import heapq
import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import cbor2

from integrations.golioth.simulator.micros import from_micros, to_micros
from integrations.golioth.simulator.pipelines import (
    CBOR,
    DEFAULT_CBOR_LOGS,
    JSON,
    Deliver,
    Message,
    Router,
)
from integrations.golioth.simulator.server import GoliothSimulator
from telemetry.keys import canonical_json

Key = tuple[str, datetime, bytes]  # (device id, time in µs, canonical JSON of the payload)
_REPORT, _RECONNECT = 0, 1
LOG_LEVELS = ("info", "info", "debug", "warn", "error")


@dataclass
class FleetDevice:
    index: int
    id: str
    content_type: str
    phase_ns: int
    offline_until_ns: int | None = None
    buffer: list[dict[str, Any]] = field(default_factory=list)
    reports: int = 0


@dataclass(frozen=True, slots=True)
class Upload:
    """One device's return: its buffered readings reached Golioth at `at`, the oldest from
    `oldest` (both µs-precise datetimes)."""

    device_id: str
    readings: int
    oldest: datetime
    at: datetime


@dataclass
class _Hook:
    calls_left: int
    action: Callable[[], None]


class FleetModel:
    def __init__(
        self,
        simulator: GoliothSimulator,
        *,
        pipelines: Iterable[dict[str, Any]],
        start: datetime,
        devices: int = 200,
        cadence: timedelta = timedelta(minutes=10),
        offline_share: float = 0.1,
        outage: tuple[timedelta, timedelta] = (timedelta(minutes=30), timedelta(hours=3)),
        path: str = "/sensor",
        log_every: int = 3,
        batch_items: int = 24,
        seed: int = 0,
        webhook: Deliver | None = None,
    ) -> None:
        """`pipelines` are the operator's (e.g. simulator_pipelines.pipelines_from_yaml of
        gsync's pipeline page); Golioth's Default CBOR Logs pipeline is added to them. `webhook`
        hears of every message their webhook steps deliver (simulator_pipelines.Router)."""
        self.simulator = simulator
        self.router = Router(
            [*pipelines, DEFAULT_CBOR_LOGS],
            project_id=simulator.project_id,
            stream=self._stored,
            webhook=webhook,
        )
        self.path = path
        self.cadence_ns = _ns(cadence)
        self.outage_ns = (_ns(outage[0]), _ns(outage[1]))
        self.log_every = log_every
        self.batch_items = batch_items
        self.offline_target = round(devices * offline_share)
        self.now_ns = to_micros(start) * 1000
        self.truth: Counter[Key] = Counter()
        self.uploads: list[Upload] = []
        self.logs_sent = 0
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._events: list[tuple[int, int, int, int]] = []
        self._order = 0
        self._offline = 0
        self._hooks: list[_Hook] = []
        self.devices = [self._add_device(n) for n in range(devices)]
        simulator.stream_hooks.append(self._on_stream_call)

    @property
    def now(self) -> datetime:
        return from_micros(self.now_ns // 1000)

    @property
    def offline(self) -> list[FleetDevice]:
        return [d for d in self.devices if d.offline_until_ns is not None]

    def advance(self, until: datetime) -> None:
        """Run the fleet up to `until` (exclusive): reports, outages, returns and their uploads."""
        limit = to_micros(until) * 1000
        with self._lock:
            while self._events and self._events[0][0] < limit:
                time_ns, _, kind, index = heapq.heappop(self._events)
                device = self.devices[index]
                if kind == _REPORT:
                    self._report(device, time_ns)
                    self._schedule(time_ns + self.cadence_ns, _REPORT, index)
                elif device.offline_until_ns == time_ns:
                    self._reconnect(device, time_ns)
            self.now_ns = max(self.now_ns, limit)

    def after_stream_calls(self, calls: int, action: Callable[[], None]) -> None:
        """Run `action` once, right after the simulator answers the `calls`-th stream query
        from now (in its server thread, while the client pages)."""
        with self._lock:
            self._hooks.append(_Hook(calls, action))

    def reconnect_during_run(self, devices: int, *, after_stream_calls: int = 1) -> list[str]:
        """Bring up to `devices` offline devices back at the fleet's `now`, uploading their
        buffers while the next run pages the stream; returns their ids."""
        with self._lock:
            offline = self.offline
            chosen = self._rng.sample(offline, min(devices, len(offline)))

        def reconnect() -> None:
            with self._lock:
                for device in chosen:
                    if device.offline_until_ns is not None:
                        self._reconnect(device, self.now_ns)

        self.after_stream_calls(after_stream_calls, reconnect)
        return [d.id for d in chosen]

    def ground_truth(self) -> list[Key]:
        """Every reading LightDB Stream holds, once each (gsync's dedup key), sorted."""
        with self._lock:
            return sorted(self.truth)

    # --- devices ---------------------------------------------------------------------------------

    def _add_device(self, n: int) -> FleetDevice:
        device_id = f"{self._rng.getrandbits(96):024x}"
        self.simulator.add_device(
            id=device_id, name=f"FLEET{n:05d}", hardware_ids=[f"fleet-{n:05d}"]
        )
        device = FleetDevice(
            index=n,
            id=device_id,
            content_type=CBOR if n % 2 else JSON,
            phase_ns=self._rng.randrange(self.cadence_ns),
        )
        self._schedule(self.now_ns + device.phase_ns, _REPORT, n)
        return device

    def _schedule(self, time_ns: int, kind: int, index: int) -> None:
        self._order += 1
        heapq.heappush(self._events, (time_ns, self._order, kind, index))

    def _report(self, device: FleetDevice, time_ns: int) -> None:
        if device.offline_until_ns is None and self._offline < self.offline_target:
            self._go_offline(device, time_ns)
        device.reports += 1
        reading = {
            "temp": round(self._rng.gauss(21.5, 2.0), 2),
            "hum": round(self._rng.uniform(30.0, 60.0), 1),
            "seq": device.reports,
        }
        if device.offline_until_ns is not None:
            device.buffer.append({"ts": time_ns // 1_000_000, **reading})
            return
        self._send(device, self.path, device.content_type, reading, time_ns)
        if device.reports % self.log_every == 0:
            line = {
                "level": self._rng.choice(LOG_LEVELS),
                "module": "app",
                "msg": f"reading {device.reports} sent",
            }
            self._send(device, "/logs", CBOR, line, time_ns)
            self.logs_sent += 1

    def _go_offline(self, device: FleetDevice, time_ns: int) -> None:
        until = time_ns + self._rng.randrange(*self.outage_ns)
        device.offline_until_ns = until
        self._offline += 1
        self._schedule(until, _RECONNECT, device.index)

    def _reconnect(self, device: FleetDevice, time_ns: int) -> None:
        buffer, device.buffer, device.offline_until_ns = device.buffer, [], None
        self._offline -= 1
        if not buffer:
            return
        for n in range(0, len(buffer), self.batch_items):
            batch = buffer[n : n + self.batch_items]
            self._send(device, self.path, device.content_type, batch, time_ns)
        self.uploads.append(
            Upload(
                device.id,
                len(buffer),
                oldest=from_micros(buffer[0]["ts"] * 1000),
                at=from_micros(time_ns // 1000),
            )
        )

    def _send(
        self, device: FleetDevice, path: str, content_type: str, value: Any, time_ns: int
    ) -> None:
        if content_type == CBOR:
            payload = cbor2.dumps(value)
        else:
            payload = json.dumps(value, separators=(",", ":")).encode()
        self.router.route(Message(device.id, path, content_type, payload, time_ns))

    def _stored(self, message: Message, value: Any) -> None:
        """A LightDB Stream delivery: into the simulator, and into the ground truth."""
        micros, nanos = divmod(message.time_ns, 1000)
        moment = from_micros(micros)
        self.simulator.add_reading(message.device_id, moment, value, nanos)
        self.truth[(message.device_id, moment, canonical_json(value))] += 1

    def _on_stream_call(self) -> None:
        with self._lock:
            for hook in self._hooks:
                hook.calls_left -= 1
            due = [h.action for h in self._hooks if h.calls_left <= 0]
            self._hooks = [h for h in self._hooks if h.calls_left > 0]
        for action in due:
            action()


def _ns(delta: timedelta) -> int:
    return (delta // timedelta(microseconds=1)) * 1000
