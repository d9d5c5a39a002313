# image2model — the two commands: `make run` (serve it) and `make test` (check it).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000

# The test suite runs against real services (see README).
TEST_DATABASE_URL ?= postgres://postgres@localhost:5432/image2model
TEST_REDIS_URL ?= redis://localhost:6379/0
TEST_ENV := DJANGO_ENV=test DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	REDIS_PREFIX=image2model-test DATA_DIR=$(CURDIR)/var/test

# The benchmarks run against real services too, on their own database (dropped and created
# again by every run; its name must contain "bench") and the Redis prefix image2model-bench.
BENCH_DATABASE_URL ?= postgres://postgres@localhost:5432/image2model_bench
BENCH_REDIS_URL ?= redis://localhost:6379/0
BENCH_ENV := DATABASE_URL=$(BENCH_DATABASE_URL) REDIS_URL=$(BENCH_REDIS_URL)

.PHONY: run test lint fmt install install-dev bench clean help vendor screenshots openapi

help:
	@echo "make run    set up and serve on http://$(HOST):$(PORT)/ (SQLite, in-process workers)"
	@echo "make test   install dev tools and run the suite against PostgreSQL and Redis"
	@echo "make lint   ruff and the import-linter contracts"
	@echo "make fmt    format the code"
	@echo "make bench  benchmarks against real processes (bench/README.md)"
	@echo "make openapi  write the committed OpenAPI documents (openapi/, see its CHANGES.md)"

$(VENV)/.runtime-installed: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	@touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.runtime-installed
	$(PIP) install --quiet -r requirements-dev.txt
	@touch $@

install: $(VENV)/.runtime-installed
install-dev: $(VENV)/.dev-installed

run: $(VENV)/.runtime-installed
	$(PY) manage.py migrate --noinput
	@$(PY) manage.py ensure_admin --url http://$(HOST):$(PORT)/
	@echo "Serving image2model on http://$(HOST):$(PORT)/  (embedded mode; Ctrl+C stops)"
	$(VENV)/bin/daphne --bind $(HOST) --port $(PORT) image2model.asgi:application

test: $(VENV)/.dev-installed
	@$(TEST_ENV) $(PY) scripts/check_services.py
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

fmt: $(VENV)/.dev-installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The committed OpenAPI documents, made by the code. No services needed: the script runs Django
# in embedded mode with its data in a temporary folder, whatever the environment says.
openapi: $(VENV)/.runtime-installed
	$(PY) scripts/openapi.py export

bench: $(VENV)/.dev-installed
	$(BENCH_ENV) $(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var

vendor:
	bash scripts/vendor_model_viewer.sh

# Current page screenshots for the README, taken by the browser tests.
screenshots: $(VENV)/.dev-installed
	$(TEST_ENV) $(PY) -m pytest -q tests/pages
	mkdir -p docs/screenshots
	cp test-artifacts/screenshots/*.png docs/screenshots/
