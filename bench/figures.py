"""Each benchmark's figures for `make bench` (bench/run_all.py), beside what it prints.

A benchmark calls `record(name, value, ...)` for every figure it prints; when GSYNC_BENCH_FIGURES
names a file (run_all sets it), each figure is appended there as one JSON line. Run alone, a
benchmark only prints.
"""

from __future__ import annotations

import json
import os


def record(
    figure: str, value: float, *, reference: float | None = None, target: str = "", met=None
) -> None:
    path = os.environ.get("GSYNC_BENCH_FIGURES")
    if not path:
        return
    line = {"figure": figure, "value": value, "reference": reference, "target": target, "met": met}
    with open(path, "a") as out:
        out.write(json.dumps(line) + "\n")
