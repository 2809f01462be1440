"""`make soak`: gsync under every fault at once, then the mirror against Golioth's ground truth.

    .venv/bin/python -m bench.soak [--minutes 3] [--devices 60] [--webhook-rate 10] [--seed 0]

One module per concern: `cluster` (the soak's own PostgreSQL), `processes` (gunicorn, ingest
workers, qclusters), `traffic` (the fleet on the wall clock and its webhooks), `faults` (what
goes wrong, when), `verdict` (the figures that must be 0), `run` (the order of it all).
"""
