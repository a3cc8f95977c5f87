#!/usr/bin/env bash
# `make run`: the whole app on one machine with embedded defaults.
# SQLite and media under ./var, Redis at REDIS_URL (a local redis-server is
# started if none answers), then migrations, a Celery embed worker, an index
# worker, beat and the web server. Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT="${PORT:-8000}"
mkdir -p var

if [[ -z "${DJANGO_SECRET_KEY:-}" ]]; then
  if [[ ! -s var/secret_key ]]; then
    $BIN/python -c "import secrets; print(secrets.token_urlsafe(50))" > var/secret_key
    chmod 600 var/secret_key
  fi
  export DJANGO_SECRET_KEY="$(cat var/secret_key)"
fi
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
BROKER="${CELERY_BROKER_URL:-$REDIS_URL}"

# Each service runs in its own process group (setsid), so Ctrl-C reaches only this
# script, which stops them in order: one TERM to each service's main process (a
# warm shutdown: gunicorn's master and Celery stop their own children), then,
# after 15 s, KILL to whatever is left of each group. (A Ctrl-C sent to every
# process at once made gunicorn's threaded workers hang in a second quit signal.)
pids=()
start() {
  setsid "$@" &
  pids+=($!)
}
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "Stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 75); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.2
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

redis_ok() {
  $BIN/python - "$BROKER" <<'PY' >/dev/null 2>&1
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PY
}

if ! redis_ok; then
  port=$($BIN/python -c "import sys; from urllib.parse import urlparse; u=urlparse(sys.argv[1]); print(u.port or 6379 if u.hostname in ('127.0.0.1','localhost') else '')" "$BROKER")
  if [[ -n "$port" ]] && command -v redis-server >/dev/null; then
    echo "No Redis answers at $BROKER: starting a local redis-server on port $port (data kept in var/)."
    setsid redis-server --bind 127.0.0.1 --port "$port" --dir "$PWD/var" --save "" --appendonly no --logfile "$PWD/var/redis.log" &
    redis_pid=$!
    for _ in $(seq 20); do
      kill -0 "$redis_pid" 2>/dev/null || { echo "redis-server did not start (see var/redis.log)."; break; }
      redis_ok && break
      sleep 0.2
    done
    if kill -0 "$redis_pid" 2>/dev/null; then pids+=($redis_pid); else wait "$redis_pid" 2>/dev/null || true; fi
  fi
fi

if redis_ok; then
  export IMAGESEARCH_EAGER=0
else
  echo "WARNING: no Redis at $BROKER and none could be started (install redis-server or set REDIS_URL)."
  echo "WARNING: running tasks inside the web process (eager mode); indexes are not rebuilt in the background."
  export IMAGESEARCH_EAGER=1
fi

$BIN/python manage.py migrate --noinput
$BIN/python manage.py collectstatic --noinput -v 0
$BIN/python manage.py check

if [[ "$IMAGESEARCH_EAGER" == "0" ]]; then
  start $BIN/celery -A imagesearch worker --pool solo -Q embed -n "embed@%h" --loglevel INFO
  start $BIN/celery -A imagesearch worker --concurrency 1 -Q index,default -n "index@%h" --loglevel INFO
  start $BIN/celery -A imagesearch beat --loglevel INFO --schedule var/celerybeat-schedule
fi
start $BIN/gunicorn imagesearch.wsgi --bind "127.0.0.1:$PORT" --workers 2 --threads 4 --timeout 120 --access-logfile -

sleep 2
cat <<MSG

  imagesearch is running: open http://127.0.0.1:$PORT/
  Staff account for the admin: .venv/bin/python manage.py createsuperuser
  Press Ctrl-C to stop.

MSG
wait -n "${pids[@]}" || true
