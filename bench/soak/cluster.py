"""A PostgreSQL cluster of the soak's own: initdb, pg_ctl start/restart/stop on a free port.

Never the machine's server: its own data directory, port and socket directory, removed at the
end. As root, every PostgreSQL program runs as the `postgres` OS user (initdb refuses root).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresCluster:
    def __init__(self, *, database: str = "gsync_soak") -> None:
        self.root = Path(tempfile.mkdtemp(prefix="gsync-soak-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.database = database
        self.restarts = 0
        self.downtime = 0.0

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.database}"

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "--no-sync", "-E",
                  "UTF8")  # fmt: skip
        self._pg_ctl("start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  self.database)  # fmt: skip

    @property
    def postmaster_pid(self) -> int:
        """The server's pid: every backend is its child."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def restart(self, *, down_seconds: float = 5.0) -> None:
        """Stop as a crash does (`-m immediate`: no checkpoint, every connection cut), stay down
        for `down_seconds`, start again (crash recovery)."""
        began = time.monotonic()
        self._run("pg_ctl", "-D", self.data, "stop", "-m", "immediate", "-w")
        time.sleep(down_seconds)
        self._pg_ctl("start")
        self.downtime += time.monotonic() - began
        self.restarts += 1

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", self.data, "stop", "-m", "fast", "-w")
        shutil.rmtree(self.root, ignore_errors=True)

    def _pg_ctl(self, action: str) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c max_connections=200"
        )
        log = self.root / "postgres.log"
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", log, "-w", action)

    def _run(self, program: str | Path, *args: str | Path) -> None:
        command = [str(BIN / program), *map(str, args)]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, cwd=self.root)
