"""A local Golioth: the Management API over real HTTP, with faults on demand, and a webhook sender.

Used by the test suite, the benchmarks and the demo (`manage.py golioth_simulator`). Everything is
in memory. A simulator that agrees with our client proves nothing, so each behaviour below names
its source; [guess] marks what no source settles, and the client is tested against the other
plausible answer too.

- Paths, auth, envelopes: `/v1/projects/{p}/...`, `x-api-key`, `{"list", "page", "perPage",
  "total"}` and `{"data"}`, gRPC-gateway error bodies (golioth-api.md §1, OpenAPI).
- Devices: 0-based pages, perPage 1..100, the filters deviceName, hardwareId, tags, blueprintId,
  cohortId, enabled, term; device objects shaped as the real capture, `status` always "-",
  nulls where captures have them (golioth-api.md §2, §6).
- LightDB Stream, project-wide and per device, POST body or GET query string (OpenAPI
  `DeviceStreamGetProjectStreamBody`): results newest first (golioth-api.md §3); `start`/`end`
  optional with `interval` (OpenAPI; defaults end = now, interval 24 h [guess]); `deviceId` and
  `tags` filters; time strings in the mixed styles of captures, µs and ns digits (golioth-api.md
  §3). The query language (fields, agg, type, filters, timeBucket, `query` or `encodedQuery`) is
  in simulator_query.py with its own sources. `total` on stream replies is in the OpenAPI but in
  no capture: `stream_total=False` leaves it out.
- Faults on a share of calls (500, 503, 429 + Retry-After, timeouts, resets, truncated bodies):
  Golioth publishes no rate limits or error rates [guess]; the client must survive them all.
- Data that moves while it is read: readings can be added at any time, with any (past) time, as
  devices that buffer offline do (docs data-routing "Legacy LightDB Stream", `batch` +
  `extract-timestamp`), so pages shift while a run reads them.
- A fleet that does this on its own, in simulated time (devices on a cadence, 10% offline
  uploading back-dated batches, JSON and CBOR devices, SDK logs, ns times, routed through
  pipelines): simulator/fleet.py.
- Webhooks in the three shapes Golioth sends (golioth-api.md §4): simulator_webhooks.py.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import requests

from integrations.golioth.payloads import StreamReading
from integrations.golioth.simulator import api
from integrations.golioth.simulator.faults import FaultConfig, fault_reply
from integrations.golioth.simulator.store import SimDevice, SimStore, seed_fleet
from integrations.golioth.simulator.webhooks import build_webhook


@dataclass(frozen=True, slots=True)
class SimRequest:
    """One call as the simulator saw it: `started` is time.monotonic() when the request arrived."""

    started: float
    method: str
    path: str
    kind: str
    query: str = ""
    fault: str | None = None
    body: bytes = b""


@dataclass
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class GoliothSimulator:
    def __init__(
        self,
        *,
        project_id: str = "sim-project",
        api_key: str = "sim-key",
        latency: float = 0.0,
        faults: FaultConfig | None = None,
        seed: int = 0,
        stream_total: bool = True,
    ) -> None:
        self.project_id = project_id
        self.api_key = api_key
        self.latency = latency
        # False: stream replies without `total` (the OpenAPI has it; no capture shows it).
        self.stream_total = stream_total
        self.store = SimStore()
        self.base_url: str | None = None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._fault_rng = random.Random(0)
        self.faults = faults
        self.calls = 0
        self.call_counts: Counter[str] = Counter()
        # The recent calls, bodies included, for tests and benchmarks to inspect.
        self.requests: deque[SimRequest] = deque(maxlen=20_000)
        self.connections = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self._sockets: set[socket.socket] = set()
        self._webhook_session: requests.Session | None = None
        # Called after each stream query is answered, in the server's thread: data that moves
        # while a run pages it (simulator_fleet.FleetModel uploads from here).
        self.stream_hooks: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"<GoliothSimulator {self.base_url or 'stopped'} project={self.project_id}>"

    # --- data ------------------------------------------------------------------------------------

    @property
    def devices(self) -> list[SimDevice]:
        return list(self.store.devices.values())

    def add_device(
        self, *, id: str | None = None, name: str | None = None, **fields: Any
    ) -> SimDevice:
        """Add a device; fields are SimDevice's (hardware_ids, tag_ids, cohort_id, ...)."""
        with self._lock:
            device_id = id or f"{self._rng.getrandbits(96):024x}"
        return self.store.add_device(SimDevice(id=device_id, name=name or device_id, **fields))

    def add_reading(self, device_id: str, time: datetime, data: Any, nanos: int = 0) -> None:
        """Store a reading; `nanos` (0-999) are its time's digits below the µs."""
        self.store.add_reading(device_id, time, data, nanos)

    def seed_fleet(
        self,
        devices: int,
        readings_per_device: int,
        *,
        start: datetime,
        end: datetime,
        **options: Any,
    ) -> list[SimDevice]:
        """A deterministic fleet (see simulator_store.seed_fleet for the options)."""
        with self._lock:
            rng = random.Random(self._rng.getrandbits(64))
        return seed_fleet(
            self.store,
            rng,
            devices=devices,
            readings_per_device=readings_per_device,
            start=start,
            end=end,
            **options,
        )

    def readings(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[StreamReading]:
        """What the simulator holds in [start, end), oldest first: the truth a mirror must equal."""
        return self.store.readings(start, end)

    # --- faults and accounting -------------------------------------------------------------------

    @property
    def faults(self) -> FaultConfig | None:
        return self._faults

    @faults.setter
    def faults(self, value: FaultConfig | None) -> None:
        # A new config restarts its RNG, so the same calls see the same faults run after run.
        with self._lock:
            self._faults = value
            self._fault_rng = random.Random(value.seed if value else 0)

    def reset_counters(self) -> None:
        with self._lock:
            self.calls = 0
            self.call_counts.clear()
            self.requests.clear()
            self.max_in_flight = 0

    def _record(
        self, method: str, path: str, query: str, kind: str, body: bytes
    ) -> tuple[str | None, FaultConfig | None]:
        """Count one call and decide its fault, under one lock so the sequence is reproducible."""
        started = time.monotonic()
        with self._lock:
            self.calls += 1
            self.call_counts[kind] += 1
            fault = None
            faults = self._faults
            if faults and faults.rate > 0 and self._fault_rng.random() < faults.rate:
                fault = self._fault_rng.choice(faults.kinds)
            self.requests.append(SimRequest(started, method, path, kind, query, fault, body))
            return fault, faults

    @contextmanager
    def _counting_in_flight(self) -> Iterator[None]:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    # --- server ----------------------------------------------------------------------------------

    def start(self, port: int = 0, host: str = "127.0.0.1") -> str:
        """Serve on a free port (or `port`) in a background thread; returns the base URL."""
        if self._server is not None:
            return self.base_url or ""
        server = _Server((host, port), _Handler)
        server.sim = self
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        self._server = server
        self.base_url = f"http://{host}:{server.server_address[1]}"
        return self.base_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        # Idle keep-alive connections would keep their handler threads blocked on a read.
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._webhook_session is not None:
            self._webhook_session.close()
            self._webhook_session = None
        self.base_url = None

    def __enter__(self) -> GoliothSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, sock: socket.socket, opened: bool) -> None:
        with self._lock:
            if opened:
                self.connections += 1
                self._sockets.add(sock)
            else:
                self._sockets.discard(sock)

    def serve(self, handler: _Handler, body: bytes) -> None:
        """Answer one request: count it, add latency, maybe inject a fault, else answer the API."""
        url = urlsplit(handler.path)
        kind, args = api.route(url.path)
        fault, faults = self._record(handler.command, url.path, url.query, kind, body)
        with self._counting_in_flight():
            if self.latency:
                time.sleep(self.latency)
            if fault == "reset":
                handler.close_connection = True
                return
            if fault == "timeout" and faults:
                time.sleep(faults.slow_seconds)
            failed = fault_reply(fault, faults)
            reply = (
                _Reply(*failed) if failed else self._answer(handler, kind, args, url.query, body)
            )
            _write(handler, reply, truncate=fault == "truncate")

    def _answer(
        self, handler: _Handler, kind: str, args: dict[str, str], query: str, body: bytes
    ) -> _Reply:
        context = api.Context(
            store=self.store,
            project_id=self.project_id,
            api_key=self.api_key,
            method=handler.command,
            headers=handler.headers,
            query=query,
            body=body,
            stream_total=self.stream_total,
        )
        status, payload = api.answer(context, kind, args)
        if kind in ("stream", "device_stream"):
            for hook in list(self.stream_hooks):
                hook()
        return _Reply(status, payload)

    # --- webhooks --------------------------------------------------------------------------------

    def send_webhook(
        self,
        url: str,
        *,
        device_id: str,
        data: Any,
        path: str = "sensor",
        shape: str = "plain",
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        time: datetime | None = None,
        include_ce_time: bool = True,
        store: bool = True,
        nest_under_path: bool = False,
        timeout: float = 10.0,
    ) -> requests.Response:
        """POST one reading to `url` as a Golioth pipeline would (golioth-api.md §4).

        With `store`, the reading also goes into this simulator's stream first, as LightDB Stream
        keeps it (as sent, or nested under its path when `nest_under_path`, like the legacy
        pipeline), so a later pull sees the same reading; the device must exist here then.
        """
        message = build_webhook(
            project_id=self.project_id,
            device_id=device_id,
            data=data,
            path=path,
            shape=shape,
            content_type=content_type,
            time=time,
            include_ce_time=include_ce_time,
        )
        if store:
            self.store.add_reading(device_id, message.time, message.stored_payload(nest_under_path))
        if self._webhook_session is None:
            self._webhook_session = requests.Session()
        merged = {**message.headers, **(headers or {})}
        return self._webhook_session.post(url, data=message.body, headers=merged, timeout=timeout)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    sim: GoliothSimulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up on purpose here (timeouts, resets): that is not worth a traceback.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.sim._track(self.connection, opened=True)

    def finish(self) -> None:
        self.server.sim._track(self.connection, opened=False)
        super().finish()

    def _serve(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            self.server.sim.serve(self, body)
        except (OSError, ValueError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _write(handler: _Handler, reply: _Reply, *, truncate: bool = False) -> None:
    handler.send_response(reply.status)
    handler.send_header("Content-Type", "application/json")
    # Every answer carries its length: clients keep the connection alive between calls.
    handler.send_header("Content-Length", str(len(reply.body)))
    for name, value in reply.headers.items():
        handler.send_header(name, value)
    if truncate:
        handler.send_header("Connection", "close")
    handler.end_headers()
    if truncate:
        handler.wfile.write(reply.body[: len(reply.body) // 2])
        handler.close_connection = True
        return
    handler.wfile.write(reply.body)
