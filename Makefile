# The two commands: `make run` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install worker index-worker beat web migrate superuser bench clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

## The whole app: web, worker, beat (and a local Redis if none answers).
run: install
	bash scripts/run.sh

## The whole test suite (set DATABASE_URL to run it on PostgreSQL).
test: install
	bash scripts/test.sh

migrate: install
	$(BIN)/python manage.py migrate

superuser: install
	$(BIN)/python manage.py createsuperuser

## Processes one by one, as in production.
web: install
	$(BIN)/gunicorn imagesearch.wsgi --bind 127.0.0.1:$${PORT:-8000} --workers 2 --threads 4

worker: install
	$(BIN)/celery -A imagesearch worker --pool solo -Q embed -n embed@%h --loglevel INFO

index-worker: install
	$(BIN)/celery -A imagesearch worker --concurrency 1 -Q index,default -n index@%h --loglevel INFO

beat: install
	$(BIN)/celery -A imagesearch beat --loglevel INFO --schedule var/celerybeat-schedule

bench: install
	$(BIN)/python bench/embed.py

clean:
	rm -rf $(VENV) staticfiles test-artifacts .pytest_cache
