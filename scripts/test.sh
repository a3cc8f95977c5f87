#!/usr/bin/env bash
# `make test`: the whole suite. DATABASE_URL chooses the database (SQLite by default);
# Redis must answer at TEST_REDIS_URL (default: redis://127.0.0.1:6379/15): the
# integration tests fail, never skip, without it.
set -euo pipefail
cd "$(dirname "$0")/.."
export DJANGO_SECRET_KEY="${DJANGO_SECRET_KEY:-test-only-secret-key-not-for-production}"
export DJANGO_DEBUG=0
export IMAGESEARCH_VGG16_WEIGHTS=none
export IMAGESEARCH_VAR_DIR="${IMAGESEARCH_VAR_DIR:-$PWD/var/test}"
export CELERY_BROKER_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
export TF_CPP_MIN_LOG_LEVEL=2
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
