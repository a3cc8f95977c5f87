#!/usr/bin/env bash
# `make run`: the whole app on one machine with embedded defaults.
# SQLite and media under ./var, Redis at REDIS_URL (a local redis-server is
# started if none answers), then migrations and every process of the Procfile
# (web server, embed worker, query worker, index worker, beat), each through scripts/proc.sh.
# Configuration is the environment, then .env (read as the Python processes read
# it: the real environment wins). Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
source scripts/proc.sh  # procfile_names, load_env
load_env
VAR="${IMAGESEARCH_VAR_DIR:-var}"
mkdir -p "$VAR"
VAR_ABS="$(cd "$VAR" && pwd)"

# Without DJANGO_SECRET_KEY (environment or .env), settings read var/secret_key:
# generate it once, readable by its owner only. Nothing needs exporting, so
# `make superuser`, manage.py and the workers find the same key.
if [[ -z "${DJANGO_SECRET_KEY:-}" && ! -s "$VAR/secret_key" ]]; then
  (umask 077 && $BIN/python -c "import secrets; print(secrets.token_urlsafe(50))" > "$VAR/secret_key")
  chmod 600 "$VAR/secret_key"
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
    echo "No Redis answers at $BROKER: starting a local redis-server on port $port (data kept in $VAR/)."
    setsid redis-server --bind 127.0.0.1 --port "$port" --dir "$VAR_ABS" --save "" --appendonly no --logfile "$VAR_ABS/redis.log" &
    redis_pid=$!
    for _ in $(seq 20); do
      kill -0 "$redis_pid" 2>/dev/null || { echo "redis-server did not start (see $VAR/redis.log)."; break; }
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

# Every Procfile process; in eager mode only the web server (tasks run inside it).
for name in $(procfile_names); do
  if [[ "$IMAGESEARCH_EAGER" == "1" && "$name" != "web" ]]; then continue; fi
  start bash scripts/proc.sh "$name"
done

url_host="${HOST:-127.0.0.1}"
[[ "$url_host" == "0.0.0.0" || "$url_host" == "::" || "$url_host" == "[::]" ]] && url_host=127.0.0.1
sleep 2
cat <<MSG

  imagesearch is running: open http://$url_host:${PORT:-8000}/
  Staff account for the admin: make superuser
  Press Ctrl-C to stop.

MSG
wait -n "${pids[@]}" || true
