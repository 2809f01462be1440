"""`make run`: the web server, a django-q2 cluster and an ingest worker together; Ctrl-C stops all.

With GSYNC_DEMO=1 it also starts the Golioth simulator with a demo fleet (see README).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # A supervisor's SIGTERM stops everything the same way as Ctrl-C does.
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", default="127.0.0.1:8000")
    args = parser.parse_args()
    manage = [sys.executable, str(ROOT / "manage.py")]
    commands = [
        [*manage, "runserver", "--insecure", "--noreload", args.addr],
        [*manage, "qcluster"],
        # Stores the queued webhook deliveries (integrations.push.queue).
        [*manage, "ingest_worker"],
    ]
    if os.environ.get("GSYNC_DEMO") == "1":
        commands.append([*manage, "demo", "--live"])
    os.environ.setdefault("GSYNC_PUBLIC_URL", f"http://{args.addr}")
    # Each child in its own session: Ctrl-C reaches only this process, which then stops each
    # child's main process (a signal to a whole qcluster group leaves django-q2 hanging).
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)  # noqa: S603
        for cmd in commands
    ]
    print(f"gsync is running: admin at http://{args.addr}/admin/  (Ctrl-C stops everything)")
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 15
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
    failed = [p.returncode for p in procs if p.returncode not in (0, -signal.SIGINT, None)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
