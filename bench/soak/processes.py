"""The soak's gsync nodes: gunicorn web processes, ingest workers and qclusters, as processes.

Each node runs in its own session (process group), so a SIGKILL takes all of it at once, as a
machine that dies would (gunicorn's master and worker; a qcluster's sentinel, pusher, monitor
and workers). A node stopped cleanly gets SIGTERM to its main process only (README: "Stop a
qcluster with SIGTERM ... to its main process only").
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BASE = Path(__file__).resolve().parents[2]
MANAGE = [sys.executable, str(BASE / "manage.py")]
KINDS = ("web", "ingest", "qcluster")


@dataclass
class Node:
    kind: str
    name: str
    command: list[str]
    env: dict[str, str]
    log_dir: Path
    port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    logs: list[Path] = field(default_factory=list)

    def start(self) -> None:
        self.starts += 1
        log_path = self.log_dir / f"{self.name}.{self.starts}.log"
        self.logs.append(log_path)
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.command, env=self.env, cwd=BASE, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole node (its process group)."""
        if self.proc is not None and self.alive:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.kills += 1

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or not self.alive:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def output(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.logs if path.exists())


def cpu_seconds(*, pgid: int | None = None, parent: int | None = None) -> float:
    """CPU seconds (user + system, with those of reaped children) of the live processes in
    process group `pgid`, or of process `parent` and its children (PostgreSQL's backends each
    call setsid()): what a node cost, whatever else shares the machine's CPUs."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid = int(stat.parent.name)
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue
        ppid, group = int(fields[1]), int(fields[2])  # after the name: state, ppid, pgrp, ...
        if group == pgid or (parent is not None and parent in (pid, ppid)):
            total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / ticks


def web_node(n: int, port: int, env: dict[str, str], log_dir: Path) -> Node:
    """One web machine: gunicorn with the README's production options, one gthread worker."""
    command = [
        str(BASE / ".venv" / "bin" / "gunicorn"), "gsync.wsgi", "--bind", f"127.0.0.1:{port}",
        "--workers", "1", "--worker-class", "gthread", "--threads", "4", "--timeout", "30",
        "--keep-alive", "30", "--log-level", "warning",
        "--logger-class", "gsync.gunicorn_logger.RedactingLogger",
    ]  # fmt: skip
    return Node("web", f"web-{n}", command, env, log_dir, port=port)


def ingest_node(n: int, env: dict[str, str], log_dir: Path) -> Node:
    return Node("ingest", f"ingest-{n}", [*MANAGE, "ingest_worker"], env, log_dir)


def qcluster_node(n: int, env: dict[str, str], log_dir: Path) -> Node:
    return Node("qcluster", f"qcluster-{n}", [*MANAGE, "qcluster"], env, log_dir)


def wait_until_serving(node: Node, probe_path: str, *, timeout: float = 60.0) -> None:
    """Until the web node answers a HEAD on `probe_path` (the webhook's probe) with 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not node.alive:
            raise RuntimeError(f"{node.name} exited: {node.output()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", node.port or 0, timeout=2)
            conn.request("HEAD", probe_path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{node.name} did not serve within {timeout:.0f} s")
