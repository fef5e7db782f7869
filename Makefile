# The two commands a fresh clone needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SERVICE ?= leave

DOCS_DEPS := docs/asyncapi/node_modules/.package-lock.json

.PHONY: install run test unit integration replay docs chaos bench up down clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# The official AsyncAPI parser, which the tests use to validate the generated documents.
$(DOCS_DEPS): docs/asyncapi/package.json docs/asyncapi/package-lock.json
	cd docs/asyncapi && npm ci --no-audit --no-fund --loglevel=error

install: $(VENV)/.installed $(DOCS_DEPS)

run: install
	@bash ops/system-packages.sh run
	@$(PY) -m ops.preflight
	$(PY) -m ops.supervisor

test: install
	@bash ops/system-packages.sh test
	@$(PY) -m ops.preflight
	$(PY) -m pytest

unit: install
	$(PY) -m pytest tests/unit

integration: install
	@$(PY) -m ops.preflight
	$(PY) -m pytest -m integration

replay: install
	$(PY) -m ops.replay $(SERVICE)

# The fault suite: services as processes under load, faults injected (the fast part also runs
# in `make test`; the long scenarios only here).
chaos: install
	@$(PY) -m ops.preflight
	$(PY) -m pytest -m chaos tests/faults

docs: install
	$(PY) -m ops.asyncapi

up:
	docker compose -f deploy/docker-compose.yml up -d --build

down:
	docker compose -f deploy/docker-compose.yml down

clean:
	rm -rf $(VENV) .run .pytest_cache docs/asyncapi/node_modules

# The province benchmark beside a raw aio-pika/asyncpg baseline (docs/benchmark.md); about
# eleven minutes, not part of `make test`.
bench: install
	@bash ops/system-packages.sh test
	@$(PY) -m ops.preflight
	$(PY) -m bench
