# goproxy: `make run` for a local stack on SQLite, `make test` for the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-dev

.PHONY: run test lint install bench migrate clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): $(PY) requirements/base.txt requirements/prod.txt requirements/dev.txt
	$(PIP) install -q -r requirements/dev.txt
	touch $(STAMP)

install: $(STAMP)

migrate: install
	mkdir -p var
	$(PY) manage.py migrate --noinput
	$(PY) manage.py migrate --noinput --database=plans

run: migrate
	$(PY) manage.py seed_demo
	$(VENV)/bin/honcho start -f Procfile

# Lint, migration drift, then the whole suite. pytest's exit 5 (no tests) is a failure.
test: install
	$(VENV)/bin/ruff check .
	$(PY) manage.py makemigrations --check --dry-run --settings=goproxy_site.settings.test >/dev/null
	$(VENV)/bin/pytest --create-db $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install
	bash bench/run.sh

clean:
	rm -rf var/*.sqlite3* .pytest_cache
