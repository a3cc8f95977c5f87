# The two commands: `make run` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint worker query-worker index-worker beat web migrate superuser bench clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

## The whole app: every Procfile process (and a local Redis if none answers).
run: install
	bash scripts/run.sh

## The whole test suite: lint, layer contracts and types, then pytest (set DATABASE_URL to run it on PostgreSQL).
test: install
	bash scripts/lint.sh
	bash scripts/test.sh

## Formatting, lint rules, import-layer contracts and types (pyproject.toml).
lint: install
	bash scripts/lint.sh

migrate: install
	$(BIN)/python manage.py migrate

## Reads .env and var/secret_key as every entry point does: nothing to export after `make run`.
superuser: install
	$(BIN)/python manage.py createsuperuser

## Processes one by one, as in production: the Procfile's entries, with .env read.
web: install
	bash scripts/proc.sh web

worker: install
	bash scripts/proc.sh worker

query-worker: install
	bash scripts/proc.sh query-worker

index-worker: install
	bash scripts/proc.sh index-worker

beat: install
	bash scripts/proc.sh beat

bench: install
	$(BIN)/python bench/embed.py

clean:
	rm -rf $(VENV) staticfiles test-artifacts .pytest_cache
