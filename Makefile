# Two commands for a new user: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV := $(PYTHON) -m uv

.PHONY: run test install-run install-dev install-bench services lint typecheck pytest bench bench-chat bench-feed bench-uploads clean

$(BIN)/python:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) venv --quiet --python $(PYTHON) $(VENV)

# dev.lock is a superset of run.lock, so a venv synced for tests also serves `make run`.
install-run: $(BIN)/python
	@if { [ ! -f $(VENV)/.synced-dev ] || [ requirements/dev.lock -nt $(VENV)/.synced-dev ]; } && \
	    { [ ! -f $(VENV)/.synced-run ] || [ requirements/run.lock -nt $(VENV)/.synced-run ]; }; then \
	  $(UV) pip sync --quiet --python $(BIN)/python requirements/run.lock && \
	  $(UV) pip install --quiet --python $(BIN)/python --no-deps -e . && \
	  rm -f $(VENV)/.synced-dev && touch $(VENV)/.synced-run; fi

install-dev: $(BIN)/python
	@if [ ! -f $(VENV)/.synced-dev ] || [ requirements/dev.lock -nt $(VENV)/.synced-dev ] || \
	    [ pyproject.toml -nt $(VENV)/.synced-dev ]; then \
	  $(UV) pip sync --quiet --python $(BIN)/python requirements/dev.lock && \
	  $(UV) pip install --quiet --python $(BIN)/python --no-deps -e . && \
	  rm -f $(VENV)/.synced-run && touch $(VENV)/.synced-dev; fi

install-bench: install-dev
	$(UV) pip install --quiet --python $(BIN)/python -r requirements/bench.lock
	@rm -f $(VENV)/.synced-dev  # the next `make test` re-syncs to exactly dev.lock

run: install-run
	$(BIN)/townhall serve

services:
	@scripts/services.sh

lint: install-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: install-dev
	$(BIN)/mypy

# Two workers (pytest-xdist): most tests wait on a broker or a database, so two share the 2 cores
# well; each worker has its own run id, hence its own databases, key prefixes and queues.
PYTEST_WORKERS ?= 2

pytest: install-dev services
	$(BIN)/pytest -n $(PYTEST_WORKERS)

test: install-dev services lint typecheck pytest

bench: install-bench services
	$(BIN)/python bench/edge.py
	$(BIN)/python bench/eventstore.py
	$(BIN)/python bench/bus.py
	$(BIN)/python bench/outbox.py
	$(BIN)/python bench/notifications.py
	$(BIN)/python bench/orders.py
	$(BIN)/python bench/orders_read_models.py
	$(BIN)/python bench/chat.py
	$(BIN)/python bench/feed.py

# Chat gateways alone (Townhall beside python-socketio); `make bench-chat ARGS=--quick`.
bench-chat: install-bench services
	$(BIN)/python bench/chat.py $(ARGS)

# The news feed's three strategies side by side (`make bench-feed ARGS=--quick`: a tenth of the graph).
bench-feed: install-bench services
	$(BIN)/python bench/feed.py $(ARGS)

# Uploads through the edge beside a bare Starlette peer, the scanners, upload-to-notification
# (`make bench-uploads ARGS=--quick`: no 1 GiB file; `ARGS="--stack pg"`: PostgreSQL + RabbitMQ).
bench-uploads: install-bench services
	$(BIN)/python bench/uploads.py $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
