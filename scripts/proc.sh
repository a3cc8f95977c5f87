#!/usr/bin/env bash
# scripts/proc.sh NAME: run the Procfile's NAME process in the foreground
# (`make web`, `make worker`, `make index-worker`, `make beat`).
#
# The Procfile is the one list of processes; scripts/run.sh (`make run`) starts
# each of them through this script. The command runs from the repository root
# with .venv/bin first on PATH and with .env's values in the environment (the
# real environment wins): `python -m imagesearch.settings --export-env` reads the
# file exactly as the Python processes do, so ${PORT}, ${HOST} and
# ${IMAGESEARCH_VAR_DIR} in the Procfile mean what they mean to Django. The
# command is exec'd: it keeps this script's pid (run.sh signals that pid).
#
# Sourced (as run.sh does), it only defines procfile_names, procfile_command and
# load_env, which work in the repository root.

# The names of the Procfile's processes, in order, one per line.
procfile_names() {
  local line
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ "$line" =~ ^([A-Za-z0-9_-]+):[[:space:]]*(.+)$ ]] && printf '%s\n' "${BASH_REMATCH[1]}"
  done < Procfile
  return 0
}

# The command of process $1.
procfile_command() {
  local line
  while IFS= read -r line || [[ -n "$line" ]]; do
    if [[ "$line" =~ ^([A-Za-z0-9_-]+):[[:space:]]*(.+)$ && "${BASH_REMATCH[1]}" == "$1" ]]; then
      printf '%s\n' "${BASH_REMATCH[2]}"
      return 0
    fi
  done < Procfile
  echo "scripts/proc.sh: no process '$1' in the Procfile (it has: $(procfile_names | paste -sd ' '))." >&2
  return 1
}

# Export .env's values that the environment does not set already.
load_env() {
  local exports
  exports=$(.venv/bin/python -m imagesearch.settings --export-env) || return 1
  eval "$exports"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  cd "$(dirname "$0")/.."
  if [[ $# -ne 1 ]]; then
    echo "usage: scripts/proc.sh NAME (one of: $(procfile_names | paste -sd ' '))" >&2
    exit 2
  fi
  command=$(procfile_command "$1")
  load_env
  export PATH="$PWD/.venv/bin:$PATH"
  mkdir -p "${IMAGESEARCH_VAR_DIR:-var}"
  eval "exec $command"
fi
