"""What goes wrong during a soak, on a schedule drawn from a seeded RNG (a failing soak replays).

- API faults on 20% of the simulator's calls: 500, 503, 429 + Retry-After, timeouts, resets,
  truncated bodies (integrations.golioth.simulator.faults; Golioth publishes no error rates
  [guess], issue 13 asks for 20%).
- Every minute one node of each kind (web, ingest worker, qcluster) is SIGKILLed at a random
  moment and started again a few seconds later, as a supervisor with `Restart=` would
  (systemd's RestartSec defaults to 100 ms; 2-5 s is a guess at a slow machine's reboot).
- Once, in the middle third of the run, the soak's own PostgreSQL stops as a crash does and
  comes back 5 s later.
- Every minute two offline devices come back while a pull pages their window (FleetModel.
  reconnect_during_run): back-dated readings land inside a window being read.
- Any node that exits by itself (it should not) is started again and counted.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable

from bench.soak.cluster import PostgresCluster
from bench.soak.processes import KINDS, Node
from integrations.golioth.simulator.faults import FaultConfig
from integrations.golioth.simulator.fleet import FleetModel
from integrations.golioth.simulator.server import GoliothSimulator

API_FAULTS = FaultConfig(rate=0.2, retry_after=1, slow_seconds=3.0, seed=13)


class FaultSchedule:
    def __init__(
        self, *, nodes: list[Node], cluster: PostgresCluster, simulator: GoliothSimulator,
        fleet: FleetModel, minutes: float, seed: int = 0,
    ) -> None:  # fmt: skip
        self.nodes = nodes
        self.cluster = cluster
        self.simulator = simulator
        self.fleet = fleet
        self.counts: Counter[str] = Counter()
        self.log: list[str] = []
        self._rng = random.Random(seed)
        self._events = self._plan(minutes)
        self._stop = threading.Event()
        self._started = 0.0
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self.simulator.faults = API_FAULTS
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        """No more faults: the API answers cleanly, every node runs."""
        self._stop.set()
        self._thread.join(timeout=60)
        self.simulator.faults = None
        self._restart_dead()

    def _plan(self, minutes: float) -> list[tuple[float, str, Callable[[], None]]]:
        events: list[tuple[float, str, Callable[[], None]]] = []
        for minute in range(max(1, int(minutes))):
            for kind in KINDS:
                node = self._rng.choice([n for n in self.nodes if n.kind == kind])
                at = (minute + self._rng.uniform(0.05, 0.8)) * 60
                events.append((at, f"SIGKILL {node.name}", self._killer(node)))
            at = (minute + self._rng.uniform(0.1, 0.9)) * 60
            events.append((at, "2 devices back mid-run", self._reconnect))
        at = self._rng.uniform(1 / 3, 2 / 3) * minutes * 60
        events.append((at, "PostgreSQL crash-restart", self._restart_postgres))
        return sorted(events, key=lambda e: e[0])

    def _killer(self, node: Node) -> Callable[[], None]:
        def kill_and_restart() -> None:
            node.kill()
            self.counts[f"SIGKILL {node.kind}"] += 1
            self._stop.wait(self._rng.uniform(2, 5))
            node.start()

        return kill_and_restart

    def _reconnect(self) -> None:
        self.counts["devices back mid-run"] += len(self.fleet.reconnect_during_run(2))

    def _restart_postgres(self) -> None:
        self.cluster.restart(down_seconds=5)
        self.counts["PostgreSQL restarts"] += 1

    def _loop(self) -> None:
        for at, label, action in self._events:
            while not self._stop.is_set() and time.monotonic() - self._started < at:
                self._restart_dead()
                self._stop.wait(0.5)
            if self._stop.is_set():
                return
            self.log.append(f"{time.monotonic() - self._started:6.1f} s  {label}")
            action()
        while not self._stop.wait(0.5):
            self._restart_dead()

    def _restart_dead(self) -> None:
        for node in self.nodes:
            if not node.alive:
                self.counts[f"exited by itself: {node.kind}"] += 1
                node.start()
