# The two commands a fresh clone needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SERVICE ?= leave

.PHONY: install run test unit integration replay up down clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	@$(PY) -m ops.preflight
	$(PY) -m ops.supervisor

test: install
	@$(PY) -m ops.preflight
	$(PY) -m pytest

unit: install
	$(PY) -m pytest tests/unit

integration: install
	@$(PY) -m ops.preflight
	$(PY) -m pytest -m integration

replay: install
	$(PY) -m ops.replay $(SERVICE)

up:
	docker compose -f deploy/docker-compose.yml up -d --build

down:
	docker compose -f deploy/docker-compose.yml down

clean:
	rm -rf $(VENV) .run .pytest_cache
