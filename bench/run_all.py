"""`make bench`: every benchmark, one after another, then one table of their figures.

    .venv/bin/python bench/run_all.py [--only ingest,webhook] [--quick]

Each benchmark runs as its own process, exactly as it runs alone (`make bench-ingest`, ...), with
the sizes below; its output streams through, and the figures it records (bench/figures.py) make
the table: figure, gsync, reference, ratio, target, met. Needs PostgreSQL at 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# name -> (script, arguments); --quick shrinks the sizes for a smoke run.
SUITE = {
    "ingest": ("bench_ingest.py", ["--readings", "200000", "--rounds", "2"]),
    "pull": ("bench_pull.py", ["--readings", "100000", "--latency", "0.15", "--rps", "10"]),
    "reconcile": ("bench_reconcile.py", ["--devices", "1000", "--hours", "48"]),
    "webhook": ("bench_webhook.py", ["--duration", "8", "--rounds", "2"]),
    "admin": (
        "bench_admin.py",
        ["--readings", "5000000", "--activity", "100000", "--devices", "10000", "--repeat", "5"],
    ),
    # 20,000 readings (alone, `make bench-scaling` pushes 40,000): figures per CPU second hardly
    # depend on the size, and `make bench` must stay under 20 minutes.
    "scaling": (
        "bench_scaling.py",
        ["--integrations", "4", "--devices", "100", "--readings-per-device", "50"],
    ),
}
QUICK = {
    "ingest": ["--readings", "20000", "--rounds", "1"],
    "pull": ["--readings", "10000", "--latency", "0.01", "--rps", "50"],
    "reconcile": ["--devices", "100", "--hours", "12"],
    "webhook": ["--duration", "3", "--rounds", "1"],
    "admin": ["--readings", "50000", "--activity", "10000", "--devices", "1000", "--repeat", "3"],
    "scaling": ["--integrations", "2", "--devices", "20", "--readings-per-device", "50"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated: " + ",".join(SUITE))
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(SUITE)
    unknown = set(names) - SUITE.keys()
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    figures_file = Path(tempfile.mkstemp(prefix="gsync-bench-", suffix=".jsonl")[1])
    env = {**os.environ, "GSYNC_BENCH_FIGURES": str(figures_file)}
    timings, failed = {}, []
    for name in names:
        script, options = SUITE[name]
        options = QUICK[name] if args.quick else options
        print(f"\n=== {name}: {script} {' '.join(options)}", flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, str(BENCH / script), *options], env=env)
        timings[name] = time.monotonic() - started
        if done.returncode:
            failed.append(name)
    rows = [json.loads(line) for line in figures_file.read_text().splitlines() if line]
    figures_file.unlink()
    print_table(rows, timings, failed)
    return 1 if failed else 0


def print_table(rows: list[dict], timings: dict[str, float], failed: list[str]) -> None:
    print("\n| figure | gsync | reference | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        value, reference = row["value"], row["reference"]
        ratio = f"{value / reference:.0%}" if reference else "-"
        met = {True: "yes", False: "**no**", None: "-"}[row["met"]]
        print(
            f"| {row['figure']} | {number(value)} | {number(reference)} | {ratio} "
            f"| {row['target']} | {met} |"
        )
    spent = ", ".join(f"{name} {seconds / 60:.1f} min" for name, seconds in timings.items())
    print(f"\ntime: {spent}; total {sum(timings.values()) / 60:.1f} min")
    if failed:
        print(f"FAILED: {', '.join(failed)} (see their output above)")


def number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


if __name__ == "__main__":
    sys.exit(main())
