#!/usr/bin/env bash
# `make test`: the whole suite; arguments go to pytest. DATABASE_URL chooses the
# database (SQLite by default).
#
# Redis: the suite starts its own. tests/redis_broker.py (a pytest plugin, see
# pytest.ini) runs one private redis-server for the session on a free loopback
# port (nothing persisted, files in a temporary directory) and points
# CELERY_BROKER_URL and REDIS_URL at it, whatever they say in the environment,
# before Django reads its settings; workers, web servers and beat inherit it.
# It is stopped when the session ends, failed or interrupted. Without
# redis-server on PATH the session fails: nothing is skipped.
#
# TEST_REDIS_URL=redis://HOST:PORT/DB opts out of the private server and uses
# a Redis database you own instead. The suite never FLUSHDBs a Redis it did not
# start: there, tests delete only the keys the suite creates (Celery's queues
# embed/index/default/query/celery, _kombu.* bindings, unacked*, imagesearch:* locks and replies;
# tests/redis_broker.py's SUITE_KEY_PATTERNS). Name a database that no running
# imagesearch uses as its broker, or its queued tasks are deleted too.
#
# No test reads data outside the repository: test images are generated
# (tests/imagegen.py).
set -euo pipefail
cd "$(dirname "$0")/.."
# A developer's .env never reaches the tests: every value the suite depends on is set here or by the tests.
export IMAGESEARCH_ENV_FILE=/dev/null
export DJANGO_SECRET_KEY="${DJANGO_SECRET_KEY:-test-only-secret-key-not-for-production}"
export DJANGO_DEBUG=0
export IMAGESEARCH_VGG16_WEIGHTS=none
export IMAGESEARCH_VAR_DIR="${IMAGESEARCH_VAR_DIR:-$PWD/var/test}"
export TF_CPP_MIN_LOG_LEVEL=2
# Workers the tests start embed no generated copies after each build (each would
# cost a real VGG16 a minute); tests/test_bands*.py turn the probes on themselves.
export IMAGESEARCH_COPY_PROBES=0
mkdir -p "$IMAGESEARCH_VAR_DIR" test-artifacts
# Browser tests drive Debian's Chromium (test tools cannot download browsers here).
if ! command -v chromium >/dev/null 2>&1; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "Installing Debian's chromium for the browser tests..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "The browser tests need Chromium: sudo apt-get install chromium" >&2
  fi
fi
exec .venv/bin/python -m pytest "$@"
