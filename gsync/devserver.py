"""`make run`: the web server and a django-q2 worker together; Ctrl-C stops both.

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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", default="127.0.0.1:8000")
    args = parser.parse_args()
    manage = [sys.executable, str(ROOT / "manage.py")]
    commands = [
        [*manage, "runserver", "--insecure", "--noreload", args.addr],
        [*manage, "qcluster"],
    ]
    if os.environ.get("GSYNC_DEMO") == "1":
        commands.append([*manage, "demo", "--live"])
    os.environ.setdefault("GSYNC_PUBLIC_URL", f"http://{args.addr}")
    procs = [subprocess.Popen(cmd, cwd=ROOT) for cmd in commands]  # noqa: S603
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
