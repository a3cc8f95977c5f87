"""Real processes for integration tests: a Celery worker (with beat) on the test
session's Redis (tests/redis_broker.py), sharing the test database and the
test's media and index directories."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis
import requests
from django.conf import settings
from django.db import connection

from tests import redis_broker

ROOT = Path(__file__).resolve().parent.parent


def require_redis():
    """Fail (never skip) when the broker is not the session's or does not answer.

    The session's broker is the private redis-server tests/redis_broker.py
    started, or the Redis an explicit TEST_REDIS_URL names."""
    url = settings.CELERY_BROKER_URL
    if url != redis_broker.broker_url():
        raise AssertionError(
            f"the broker in the settings ({url}) is not the test session's ({redis_broker.broker_url()})"
        )
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


class _Process:
    """A subprocess in its own process group, logging to a file; stopped on exit."""

    proc = None
    log = None

    def _spawn(self, cmd):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self, sig=signal.SIGKILL):
        """Kill the whole process group (children included) and wait."""
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)

    def stop(self):
        """Ask politely (SIGTERM), then kill after 30 s."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.log:
            self.log.close()

    def output(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Worker(_Process):
    """A `celery worker` subprocess (solo pool, all queues unless told, embedded beat)."""

    def __init__(self, tmp_path, name="w1", beat=True, queues="embed,index,default,query", **env):
        self.tmp_path = Path(tmp_path)
        self.name = name
        self.beat = beat
        self.queues = queues
        self.env = worker_env(tmp_path, **env)
        self.log_path = self.tmp_path / f"worker-{name}.log"
        self.proc = None

    def start(self):
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "imagesearch",
            "worker",
            "--pool",
            "solo",
            "-Q",
            self.queues,
            "-n",
            f"{self.name}@%h",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ]
        if self.beat:
            cmd += ["-B", "--schedule", str(self.tmp_path / f"beat-{self.name}")]
        self._spawn(cmd)
        return self


def wait_for(predicate, timeout, interval=0.5, message="condition", worker=None):
    """Poll `predicate` until it returns a truthy value; fail with the worker's log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if worker is not None and worker.proc.poll() is not None:
            raise AssertionError(
                f"worker exited ({worker.proc.returncode}) while waiting for {message}:\n{worker.output()[-4000:]}"
            )
        time.sleep(interval)
    log = worker.output()[-4000:] if worker else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {message}\n{log}")


def flush_broker():
    """Empty the broker of what earlier tests left there.

    FLUSHDB only on the session's private redis-server, checked by its process id
    (never on a Redis the suite did not start, even one on the same port). On a
    Redis named by TEST_REDIS_URL, only the keys the suite's processes create are
    deleted (tests/redis_broker.py's SUITE_KEY_PATTERNS); nothing else is touched."""
    url = require_redis()
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    if redis_broker.owned():
        keys = {key for pattern in redis_broker.SUITE_KEY_PATTERNS for key in client.scan_iter(match=pattern)}
        if keys:
            client.delete(*keys)
        return
    pid = client.info("server")["process_id"]
    if pid != redis_broker.SERVER.pid:
        raise AssertionError(f"refusing to flush {url}: it is served by pid {pid}, not the suite's redis-server")
    client.flushdb()


def free_port():
    """Return a TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private `redis-server` on a free loopback port, to stop and start again.

    Nothing is persisted (--save "" --appendonly no): a restart comes back
    empty, as after a crash of a broker without persistence. The session's
    broker (tests/redis_broker.py) is never touched.
    """

    def __init__(self, tmp_path, port=None):
        self.dir = Path(tmp_path) / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc = None
        binary = shutil.which("redis-server")
        if binary is None:
            raise AssertionError("redis-server is required for the broker fault tests and is not on PATH")
        self.binary = binary

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self):
        try:
            return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5).ping()
        except redis.exceptions.ConnectionError:
            return False

    def start(self):
        cmd = redis_broker.server_command(self.binary, self.port, self.dir)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self.ping, timeout=15, interval=0.1, message=f"redis-server on port {self.port}")
        return self

    def stop(self):
        redis_broker.terminate(self.proc)
        wait_for(lambda: not self.ping(), timeout=15, interval=0.1, message=f"redis-server on port {self.port} to stop")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Web(_Process):
    """A gunicorn subprocess serving the app on a free loopback port, with the
    same database, broker, media and index directories as `Worker`."""

    def __init__(self, tmp_path, name="web", workers=2, threads=4, **env):
        self.tmp_path = Path(tmp_path)
        self.name = name
        self.workers = workers
        self.threads = threads
        self.port = free_port()
        self.env = worker_env(tmp_path, IMAGESEARCH_STATIC_ROOT=str(self.tmp_path / "static"), **env)
        self.log_path = self.tmp_path / f"{name}.log"
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        # DEBUG is off, as in production: pages need the hashed static manifest.
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
        )
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "imagesearch.wsgi",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--timeout",
            "120",
        ]
        self._spawn(cmd)
        wait_for(self._answers, timeout=90, interval=0.3, message="gunicorn to answer", worker=self)
        return self

    def _answers(self):
        try:
            return requests.get(self.url + "/accounts/login/", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False


class HttpClient:
    """A signed-in browser-like session against a `Web` server (session cookie + CSRF token)."""

    def __init__(self, base_url, timeout=120):
        self.base_url = base_url
        self.timeout = timeout
        self.session = requests.Session()

    def login(self, username, password):
        self.session.get(self.base_url + "/accounts/login/", timeout=self.timeout).raise_for_status()
        response = self.session.post(
            self.base_url + "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": self.session.cookies["csrftoken"]},
            allow_redirects=False,
            timeout=self.timeout,
        )
        if response.status_code != 302:
            raise AssertionError(f"login as {username} failed: {response.status_code}")
        return self

    def get(self, path, **kwargs):
        return self.session.get(self.base_url + path, timeout=self.timeout, **kwargs)

    def post(self, path, **kwargs):
        headers = {"X-CSRFToken": self.session.cookies.get("csrftoken", ""), **kwargs.pop("headers", {})}
        return self.session.post(self.base_url + path, headers=headers, timeout=self.timeout, **kwargs)

    def upload(self, slug, files):
        """POST (name, bytes) pairs to the JSON API; return the response."""
        parts = [("images", (name, data, "application/octet-stream")) for name, data in files]
        return self.post(f"/api/galleries/{slug}/images", files=parts)
