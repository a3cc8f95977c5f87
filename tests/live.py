"""Real processes for integration tests: a Celery worker (with beat) on the real
Redis, sharing the test database and the test's media and index directories."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def require_redis():
    """Fail (never skip) when the broker does not answer."""
    url = settings.CELERY_BROKER_URL
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError as exc:
        raise AssertionError(f"Redis is required for the integration tests and does not answer at {url}: {exc}")
    return url


def database_url():
    """Return a DATABASE_URL naming the test database this process is using."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    if connection.vendor == "postgresql":
        auth = s["USER"] or ""
        if s.get("PASSWORD"):
            auth += f":{s['PASSWORD']}"
        return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    raise AssertionError(f"no worker database URL for {connection.vendor}")


def worker_env(tmp_path, **extra):
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        IMAGESEARCH_MEDIA_ROOT=str(settings.MEDIA_ROOT),
        IMAGESEARCH_INDEX_DIR=str(settings.IMAGESEARCH_INDEX_DIR),
        IMAGESEARCH_VGG16_WEIGHTS="none",
        IMAGESEARCH_EAGER="0",
        IMAGESEARCH_INDEX_REBUILD_SECONDS="2",
        IMAGESEARCH_RECONCILE_SECONDS="3",
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Worker:
    """A `celery worker` subprocess (solo pool, all queues, embedded beat)."""

    def __init__(self, tmp_path, name="w1", beat=True, **env):
        self.tmp_path = Path(tmp_path)
        self.name = name
        self.beat = beat
        self.env = worker_env(tmp_path, **env)
        self.log_path = self.tmp_path / f"worker-{name}.log"
        self.proc = None

    def start(self):
        cmd = [
            sys.executable, "-m", "celery", "-A", "imagesearch", "worker",
            "--pool", "solo", "-Q", "embed,index,default", "-n", f"{self.name}@%h",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle",
        ]
        if self.beat:
            cmd += ["-B", "--schedule", str(self.tmp_path / f"beat-{self.name}")]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def kill(self, sig=signal.SIGKILL):
        """Kill the worker's whole process group (beat child included) and wait."""
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "log", None):
            self.log.close()

    def output(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def wait_for(predicate, timeout, interval=0.5, message="condition", worker=None):
    """Poll `predicate` until it returns a truthy value; fail with the worker's log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if worker is not None and worker.proc.poll() is not None:
            raise AssertionError(f"worker exited ({worker.proc.returncode}) while waiting for {message}:\n{worker.output()[-4000:]}")
        time.sleep(interval)
    log = worker.output()[-4000:] if worker else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {message}\n{log}")


def flush_broker():
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
