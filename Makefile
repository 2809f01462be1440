# gsync: `make run` to try it, `make test` to check it. See README.md.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
ADDR ?= 127.0.0.1:8000
STAMP := $(VENV)/.installed

.PHONY: run test browser-deps install lint bench bench-pull bench-reconcile bench-ingest bench-webhook bench-admin bench-scaling soak clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# A local .env with fresh secrets, written once and never committed (.gitignore).
.env: | $(PY)
	$(PY) -m gsync.envfile .env

run: install .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_admin
	$(PY) -m gsync.devserver --addr $(ADDR)

test: install browser-deps
	$(PY) -m pytest

# The browser test drives Debian's Chromium: install it once, quietly, when missing (as root;
# otherwise that one test is skipped and says why).
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing chromium for the browser test (once)..."; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	      >/dev/null) || echo "Could not install chromium: the browser test will be skipped."; \
	  else \
	    echo "chromium is missing (sudo apt-get install chromium): the browser test is skipped."; \
	  fi; \
	fi

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Benchmarks (PostgreSQL at 127.0.0.1 by default; each prints its figures). Not part of `make test`.
# `make bench` runs them all and prints one table (bench/run_all.py; BENCH_ARGS=--quick to smoke).
bench: install
	$(PY) bench/run_all.py $(BENCH_ARGS)
bench-pull: install
	$(PY) bench/bench_pull.py
bench-reconcile: install
	$(PY) bench/bench_reconcile.py
bench-ingest: install
	$(PY) bench/bench_ingest.py
bench-webhook: install
	$(PY) bench/bench_webhook.py
bench-admin: install
	$(PY) bench/bench_admin.py
bench-scaling: install
	$(PY) bench/bench_scaling.py

# Every fault at once for SOAK_MINUTES (default 3), then the mirror against the ground truth;
# starts its own PostgreSQL (initdb) and uses Redis at 127.0.0.1:6379 (GSYNC_REDIS_URL).
soak: install
	$(PY) -m bench.soak

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-output
