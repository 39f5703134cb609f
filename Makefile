# The platform's everyday commands. `make run` and `make test` are the README's two commands.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run web stream infer test lint format bench

# The virtualenv is rebuilt only when the requirements change.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

# Embedded default, end to end: migrations, demo models and admin user, one daphne process, and
# demo traffic beside it (DEMO_TRAFFIC=0: none; DEMO_RATE requests a second). demo_traffic waits for
# /readyz itself, and the trap stops it whenever the server ends (Ctrl-C, or daphne exiting). The
# access log goes to a file: a line per demo request would bury everything else.
DEMO_TRAFFIC ?= 1
DEMO_RATE ?= 3
run: install
	$(BIN)/python manage.py migrate --no-input -v 0
	$(BIN)/python manage.py bootstrap_demo
	@echo "Platform on http://$(HOST):$(PORT)/  (admin: http://$(HOST):$(PORT)/admin/)"
	@traffic=; \
	if [ "$(DEMO_TRAFFIC)" != 0 ]; then \
	  $(BIN)/python manage.py demo_traffic --url http://$(HOST):$(PORT) --rate $(DEMO_RATE) --outcomes & traffic=$$!; \
	fi; \
	stop_traffic() { [ -z "$$traffic" ] || { kill $$traffic 2>/dev/null; wait $$traffic; traffic=; }; }; \
	trap stop_traffic EXIT INT TERM; \
	$(BIN)/daphne -b $(HOST) -p $(PORT) --access-log $${VAR_DIR:-var}/access.log mlops.asgi:application

# Production process types (the Procfile; docs/production.md): `web` (WSGI: admin + API), `stream`
# (ASGI: SSE) and `infer` (the hot lane), on this machine's loopback.
web: install
	$(BIN)/gunicorn -c gunicorn.conf.py mlops.wsgi:application

stream: install
	$(BIN)/daphne -b $(HOST) -p $(PORT) mlops.asgi:application

# The hot lane (POST /v1/infer, /v1/infer/batch, GET /v1/infer/{id}): the Procfile's `infer`.
infer: install
	$(BIN)/granian --interface rsgi --host $(HOST) --port $(PORT) --workers $${WEB_CONCURRENCY:-1} inference.lane.app:app

test: install lint
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python bench/run.py
