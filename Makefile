# gsync: `make run` to try it, `make test` to check it. See README.md.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
ADDR ?= 127.0.0.1:8000
STAMP := $(VENV)/.installed

.PHONY: run test install lint bench-pull bench-ingest bench-webhook clean

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

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-output
