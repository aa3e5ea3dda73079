# goproxy: `make run` for a local stack on SQLite, `make test` for the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-dev

.PHONY: run test lint typecheck install sysdeps compose-check bench fuzz migrate clean

# Debian packages the test suite drives (Chromium for browser tests). Installed only
# when missing, and only where apt is usable (root); never a downloaded browser.
SYS_PACKAGES := chromium chromium-driver

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): $(PY) requirements/base.txt requirements/prod.txt requirements/dev.txt
	$(PIP) install -q -r requirements/dev.txt
	touch $(STAMP)

# The proxy's hot-path modules compiled by Cython (proxy_daemon/compiled.py); rebuilt
# when a source changes. A stale build is discarded at import, never used.
COMPILED := proxy_daemon/compiled.json
COMPILED_SOURCES := $(addprefix proxy_daemon/,auth.py http1.py limits.py metering.py metrics.py registry.py server.py sockio.py tunnel.py upstream.py compiled.py)

# Importing the package first discards stale and orphaned builds (an extension module left
# by a renamed source would otherwise be imported by its old name while Cython loads).
$(COMPILED): $(STAMP) $(COMPILED_SOURCES)
	$(PY) -c "import proxy_daemon"
	$(PY) proxy_daemon/compiled.py

install: $(STAMP) $(COMPILED)

sysdeps:
	@missing=""; for p in $(SYS_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (browser tests will be skipped)" >&2; fi; \
	fi

migrate: install
	mkdir -p var/celery/queue var/celery/processed var/celery/control var/spool
	$(PY) manage.py migrate --noinput
	$(PY) manage.py migrate --noinput --database=plans

run: migrate
	$(PY) manage.py seed_demo
	$(VENV)/bin/honcho start -f Procfile

# `docker compose config` where the compose plugin exists (not on these machines: there
# goproxy_site/tests/test_compose.py reads the file). A temporary folder keeps the
# placeholder .env away from the settings, which read ./.env.
compose-check:
	@if docker compose version >/dev/null 2>&1; then \
	  d=$$(mktemp -d); sed 's/=$$/=ci-placeholder/' .env.example > $$d/.env; cp docker-compose.yml $$d/; \
	  (cd $$d && docker compose config -q) && echo "docker-compose.yml valid"; rc=$$?; rm -rf $$d; exit $$rc; \
	else echo "docker compose plugin not installed: compose checked by test_compose.py only"; fi

# Lint, migration drift, then the whole suite. pytest's exit 5 (no tests) is a failure.
test: install sysdeps compose-check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(PY) manage.py makemigrations --check --dry-run --settings=goproxy_site.settings.test >/dev/null
	$(VENV)/bin/pytest --create-db $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy .

bench: install
	bash bench/run.sh

# Longer, opt-in coverage-guided fuzzing of the request and auth parsers (atheris).
fuzz: install
	FUZZ_RUNS=$${FUZZ_RUNS:-2000000} $(PY) proxy_daemon/tests/fuzz_atheris.py

clean:
	rm -rf var/*.sqlite3* .pytest_cache build
	$(PY) proxy_daemon/compiled.py --clean
