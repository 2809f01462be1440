"""The short soak (issue 13): about a minute of `make soak` on every `make test` on PostgreSQL.

It runs the harness exactly as `make soak` does (bench/soak), in a subprocess that starts its
own PostgreSQL cluster and gsync nodes, and checks what an operator reads in its output: that
every fault happened, and that every figure of the verdict is 0.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from bench.soak.cluster import BIN

ROOT = Path(__file__).resolve().parents[1]
ZERO_FIGURES = (
    "readings missing",
    "readings doubled",
    "readings surplus",
    "devices wrong",
    "deliveries unprocessed",
    "leases still held",
)

pytestmark = pytest.mark.slow


def test_short_soak_loses_nothing_and_doubles_nothing():
    if connection.vendor != "postgresql":
        pytest.skip(
            "runs in the PostgreSQL run of make test (DATABASE_URL=postgres://...) only: "
            "once per CI run is enough, and the soak brings its own PostgreSQL cluster"
        )
    if not (BIN / "initdb").exists():
        pytest.skip(f"needs PostgreSQL 15's initdb in {BIN} to start a cluster of its own")

    soak = subprocess.Popen(
        [sys.executable, "-m", "bench.soak", "--minutes", "1",
         "--log-dir", str(ROOT / "test-output" / "soak-short")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        stdout, stderr = soak.communicate(timeout=170)
    except subprocess.TimeoutExpired:
        soak.terminate()  # on SIGTERM the soak stops its nodes and its cluster, then exits
        stdout, stderr = soak.communicate(timeout=60)

    output = stdout + stderr
    figures = {
        name: int(value.replace(",", ""))
        for name, value in re.findall(r"^(\w[\w ]+?) +([\d,]+)$", stdout, re.M)
    }
    assert soak.returncode == 0, output
    assert {name: figures[name] for name in ZERO_FIGURES} == dict.fromkeys(ZERO_FIGURES, 0)
    assert figures["ground truth readings"] > 200
    assert figures["mirror rows"] == figures["ground truth readings"]
    faults = re.search(r"^faults: (.*)$", stdout, re.M)
    assert faults, output
    for fault in ("SIGKILL web 1", "SIGKILL ingest 1", "SIGKILL qcluster 1",
                  "PostgreSQL restarts 1"):  # fmt: skip
        assert fault in faults.group(1)
    assert "PASS" in stdout
