# streamkit developer entry points. CI runs `make test` (through .ci/run) unchanged.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
COMPOSE ?= $(shell command -v docker-compose >/dev/null 2>&1 && echo docker-compose || echo docker compose)

.PHONY: help install services images test test-unit test-core test-mock test-no-otel wheel-smoke docs docs-serve lint format demo up down clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install streamkit with its dev extras

services:  ## make sure a Docker engine answers and the test servers are installed
	scripts/ensure-docker.sh
	scripts/ensure-packages.sh

images: install services  ## make sure the Kafka and registry images exist (pull, else build; cached)
	$(PY) -m streamkit.testing.images

test: install services images  ## run the whole suite against real Kafka, registry and Redis
	$(PY) -m pytest --durations=30

test-unit: install  ## only the unit tests (no containers)
	$(PY) -m pytest tests/unit

# Without the otel extra: streamkit must work and add no trace header (CI runs this too).
NO_OTEL_VENV ?= .venv-no-otel
NO_OTEL_STAMP := $(NO_OTEL_VENV)/.installed

$(NO_OTEL_STAMP): pyproject.toml
	$(PYTHON) -m venv $(NO_OTEL_VENV)
	$(NO_OTEL_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(NO_OTEL_VENV)/bin/python -m pip install --quiet -e ".[cli,testing,redis,postgres,models,test]"
	! $(NO_OTEL_VENV)/bin/python -c "import opentelemetry" 2>/dev/null
	touch $(NO_OTEL_STAMP)

test-no-otel: services images $(NO_OTEL_STAMP)  ## produce without OpenTelemetry installed: no trace header
	$(NO_OTEL_VENV)/bin/python -m pytest tests/integration/observability/test_no_otel.py

CORE_VENV ?= .venv-core
test-core:  ## the unit tests on the core install only (no extra), as a user's service has it
	rm -rf $(CORE_VENV)
	$(PYTHON) -m venv $(CORE_VENV)
	$(CORE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CORE_VENV)/bin/python -m pip install --quiet '.[test]'
	$(CORE_VENV)/bin/python -m pytest tests/unit -p no:cacheprovider

test-mock: install  ## the broker_less slice of the integration tests on librdkafka's mock cluster
	$(PY) -m pytest -m broker_less --streamkit-kafka=mock tests/integration

wheel-smoke: install services images  ## build sdist + wheel, install into a fresh venv, run the demo there
	scripts/wheel-smoke.sh

docs: install  ## build the documentation site (mkdocs --strict) into site/
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

docs-serve: install  ## serve the documentation on http://127.0.0.1:8000 while editing
	$(PY) -m mkdocs serve --dev-addr 127.0.0.1:8000

lint: install  ## ruff (lint + format check) and mypy --strict on streamkit/
	$(PY) -m ruff check streamkit tests bench docs
	$(PY) -m ruff format --check streamkit tests bench docs
	$(PY) -m mypy

format: install  ## apply ruff's formatting and fixes
	$(PY) -m ruff format streamkit tests bench docs
	$(PY) -m ruff check --fix streamkit tests bench docs

demo: install services images  ## the main job: streamkit demo on a throwaway local Kafka
	$(VENV)/bin/streamkit demo

up: install services images  ## start docker-compose.yml: Kafka, registry, Prometheus, Grafana (127.0.0.1 only)
	COMPOSE="$(COMPOSE)" scripts/compose-up.sh

down:  ## stop and remove the docker-compose stack
	$(COMPOSE) down --remove-orphans

clean:  ## remove the virtualenvs and caches
	rm -rf $(VENV) $(CORE_VENV) $(NO_OTEL_VENV) .mypy_cache .ruff_cache .pytest_cache site dist

# Benchmarks: peers live in their own venv, never in streamkit's dependencies.
BENCH_VENV ?= .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_ARGS ?=
.PHONY: bench

$(BENCH_STAMP): pyproject.toml bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -e . -r bench/requirements.txt
	touch $(BENCH_STAMP)

bench: services images $(BENCH_STAMP)  ## throughput/latency vs a hand-written floor and peers (not CI)
	$(BENCH_VENV)/bin/python -m bench.run $(BENCH_ARGS)
