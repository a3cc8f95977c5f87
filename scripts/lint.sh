#!/usr/bin/env bash
# `make lint` (and the first step of `make test`): formatting, lint rules, the
# import-layer contracts and types, all configured in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
export IMAGESEARCH_ENV_FILE=/dev/null  # mypy's Django plugin imports the settings: no developer .env
export DJANGO_SECRET_KEY="${DJANGO_SECRET_KEY:-lint-only-secret-key}"
export IMAGESEARCH_VGG16_WEIGHTS=none
export IMAGESEARCH_VAR_DIR="${IMAGESEARCH_VAR_DIR:-$PWD/var/test}"
mkdir -p "$IMAGESEARCH_VAR_DIR"
BIN=.venv/bin
echo "ruff format --check"; $BIN/ruff format --check --quiet .
echo "ruff check"; $BIN/ruff check --quiet .
echo "lint-imports"; $BIN/lint-imports --no-cache >/dev/null || $BIN/lint-imports --no-cache
echo "mypy"; $BIN/mypy
