"""The Golioth side of the soak: a fleet living in real time, and the webhooks its pipelines send.

- The fleet is integrations.golioth.simulator.fleet.FleetModel, run against the wall clock
  (`LiveFleet`): devices on a cadence, a tenth offline uploading back-dated batches through
  `batch` + `extract-timestamp`, JSON and CBOR devices, SDK logs (sources in fleet.py). The
  cadence (seconds, not minutes) and outage lengths (minutes, not hours) are shrunk so a soak
  of a few minutes sees many of each [guess: the shapes matter, not Golioth's real pace].
- The pipelines are the ones gsync's integration page gives operators (integrations.push.
  pipeline), with the buffered-upload steps: each reading goes to LightDB Stream (the ground
  truth) and, through `inject-metadata`, to the webhook.
- Each webhook delivery is re-encoded in one of the body shapes gsync accepts (golioth-api.md
  §4: plain with `Ce-*` headers, inject-metadata, legacy Output Streams; JSON or CBOR): which
  shape a fleet's pipelines use is the operator's choice, so the soak sends every one.
- Golioth's webhook retries are undocumented (golioth-api.md §6) [guess]: the sender retries a
  failed delivery (no answer, 5xx, 429) on the other web node, as a load balancer would, until it
  gets an answer; 1 in 10 deliveries is sent twice (a message matching two pipelines, docs
  data-routing/filters), and deliveries leave out of order (a random one of the oldest 20).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from integrations.golioth.simulator.fleet import FleetModel
from integrations.golioth.simulator.micros import from_micros
from integrations.golioth.simulator.pipelines import Message, pipelines_from_yaml
from integrations.golioth.simulator.server import GoliothSimulator
from integrations.golioth.simulator.webhooks import build_webhook

# (shape, content type): every body shape gsync's view accepts.
SHAPES = [
    ("inject-metadata", "application/json"),
    ("inject-metadata", "application/cbor"),
    ("plain", "application/json"),
    ("plain", "application/cbor"),
    ("legacy", "application/json"),
]
DUPLICATE_SHARE = 0.1
REORDER_WINDOW = 20


class WebhookSender:
    """POSTs queued deliveries to the web nodes at `rate` per second from `threads` threads."""

    def __init__(
        self, *, ports: list[int], path: str, secret: str, project_id: str, rate: float,
        threads: int = 4, seed: int = 0,
    ) -> None:  # fmt: skip
        self.urls = [f"http://127.0.0.1:{port}{path}" for port in ports]
        self.secret = secret
        self.project_id = project_id
        self.interval = threads / rate
        self.threads = threads
        self.stats: Counter[str] = Counter()
        self._pending: list[tuple[Message, Any]] = []
        self._in_flight = 0
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def deliver(self, message: Message, envelope: Any) -> None:
        """A pipeline's webhook step (FleetModel's `webhook` callback): queue it, maybe twice."""
        with self._lock:
            self._pending.append((message, envelope))
            self.stats["readings"] += 1
            if self._rng.random() < DUPLICATE_SHARE:
                self._pending.insert(self._rng.randrange(len(self._pending)), (message, envelope))
                self.stats["duplicates sent"] += 1

    @property
    def pending(self) -> int:
        """Deliveries not answered yet: queued, or being sent (retried until answered)."""
        with self._lock:
            return len(self._pending) + self._in_flight

    def start(self) -> None:
        for n in range(self.threads):
            thread = threading.Thread(target=self._loop, args=(n,), daemon=True)
            thread.start()
            self._workers.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout=30)

    def drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.2)
        return not self.pending

    def _take(self) -> tuple[Message, Any] | None:
        with self._lock:
            if not self._pending:
                return None
            index = self._rng.randrange(min(REORDER_WINDOW, len(self._pending)))
            if index:
                self.stats["out of order"] += 1
            self._in_flight += 1
            return self._pending.pop(index)

    def _loop(self, n: int) -> None:
        session = requests.Session()
        next_send = time.monotonic()
        while not self._stop.is_set():
            next_send = max(next_send + self.interval, time.monotonic() - 1)
            self._stop.wait(max(0.0, next_send - time.monotonic()))
            item = self._take()
            if item is None:
                continue
            try:
                self._send(session, n, *item)
            finally:
                with self._lock:
                    self._in_flight -= 1

    def _send(self, session: requests.Session, n: int, message: Message, envelope: Any) -> None:
        shape, content_type = SHAPES[self._rng.randrange(len(SHAPES))]
        webhook = build_webhook(
            project_id=self.project_id, device_id=message.device_id, data=envelope["data"],
            path=message.path.strip("/"), shape=shape, content_type=content_type,
            time=from_micros(message.time_ns // 1000),
        )  # fmt: skip
        headers = {**webhook.headers, "Authorization": self.secret}
        for attempt in range(10_000):
            url = self.urls[(n + attempt) % len(self.urls)]
            try:
                status = session.post(
                    url, data=webhook.body, headers=headers, timeout=10
                ).status_code
            except requests.RequestException:
                status = 0
            self.stats[f"HTTP {status or 'no answer'}"] += 1
            if status and status < 500 and status != 429:
                self.stats[f"sent {shape} {content_type.split('/')[1]}"] += 1
                return
            self.stats["retries"] += 1
            if self._stop.wait(0.5):
                return


class LiveFleet:
    """A FleetModel on the wall clock, advanced every `tick` seconds in a thread of its own."""

    def __init__(
        self, simulator: GoliothSimulator, sender: WebhookSender, *, pipeline_text: str,
        devices: int, cadence: timedelta, outage: tuple[timedelta, timedelta], seed: int = 0,
    ) -> None:  # fmt: skip
        self.model = FleetModel(
            simulator, pipelines=pipelines_from_yaml(pipeline_text), start=datetime.now(UTC),
            devices=devices, cadence=cadence, outage=outage, seed=seed, webhook=sender.deliver,
        )  # fmt: skip
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> datetime:
        """Stop the fleet; returns the time up to which it ran (nothing newer exists)."""
        self._stop.set()
        self._thread.join(timeout=30)
        return self.model.now

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self.model.advance(datetime.now(UTC))
