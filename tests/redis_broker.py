"""pytest plugin: one private redis-server for the whole test session.

Loaded by pytest.ini (`-p tests.redis_broker`). Its `pytest_load_initial_conftests`
hook runs first (tryfirst), before pytest-django's, which imports the Django
settings: the settings, every worker and web subprocess (tests/live.py copies
os.environ and settings.CELERY_BROKER_URL) and beat therefore all see
CELERY_BROKER_URL and REDIS_URL pointing at this server, whatever the calling
environment says.

The server listens on a free loopback port, persists nothing (--save ""
--appendonly no) and keeps its dir and log in a temporary directory. It is
stopped at the end of the session (pytest_unconfigure, also after a failure or
Ctrl-C), by atexit if pytest stops before configuring, and by the kernel
(PR_SET_PDEATHSIG) if the pytest process itself is killed.

Without `redis-server` on PATH the session fails; nothing is skipped. The one
way around the private server is an explicit TEST_REDIS_URL naming a Redis
database you own: see `owned()` and tests/live.py's flush_broker, which never
FLUSHDBs a Redis this plugin did not start.
"""

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

OPT_IN = "TEST_REDIS_URL"
# Every key the suite's processes create on the broker: the app's four queues (and
# kombu's priority variants of them, NAME + "\x06\x16" + priority), Celery's default
# queue, kombu's bindings and unacked bookkeeping, the app's index locks and query replies. All that
# flush_broker may delete on a Redis the suite did not start.
SUITE_KEY_PATTERNS = tuple(
    [pattern for queue in ("embed", "index", "default", "query", "celery") for pattern in (queue, queue + "\x06\x16*")]
    + ["_kombu.*", "unacked*", "imagesearch:*"]
)


def server_command(binary, port, directory):
    """The redis-server command line of a private, non-persistent server on 127.0.0.1:port."""
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
        "--logfile",
        str(Path(directory) / "redis.log"),
    ]


def terminate(proc):
    """Stop a server process: TERM, then KILL after 15 s."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent():
    """In the child before exec: SIGTERM it when the process that started it dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _ping(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class SessionRedis:
    """The session's private redis-server."""

    def __init__(self):
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise pytest.UsageError(
                "redis-server is required by the test suite (it starts a private one for the session) and is "
                "not on PATH: apt-get install redis-server. To use a Redis database you own instead, set "
                f"{OPT_IN}=redis://HOST:PORT/DB (the suite then deletes only its own keys there, never FLUSHDB)."
            )
        self.dir = Path(tempfile.mkdtemp(prefix="imagesearch-test-redis-"))
        self.proc = None
        self.port = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self):
        return self.proc.pid

    def start(self, attempts=5):
        for _ in range(attempts):  # a free port may be taken between the probe and the bind
            self.port = _free_port()
            self.proc = subprocess.Popen(
                server_command(self.binary, self.port, self.dir),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches pytest, which stops the server after the teardowns
                preexec_fn=_die_with_parent,
            )
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _ping(self.port):
                    return self
                time.sleep(0.05)
            self.stop(remove=False)
        log = self.dir / "redis.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        self._remove()
        raise pytest.UsageError(f"the test suite's private redis-server did not start ({self.binary}):\n{tail}")

    def stop(self, remove=True):
        terminate(self.proc)
        if remove:
            self._remove()

    def _remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


SERVER = None  # the running SessionRedis, or None when TEST_REDIS_URL names a Redis the user owns


def owned():
    """True when the broker is a Redis the user pointed TEST_REDIS_URL at (not started by the suite)."""
    return SERVER is None


def broker_url():
    return SERVER.url if SERVER is not None else os.environ[OPT_IN]


def _stop():
    global SERVER
    if SERVER is not None:
        SERVER.stop()
        SERVER = None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    global SERVER
    if SERVER is None and not os.environ.get(OPT_IN):
        SERVER = SessionRedis().start()
        atexit.register(_stop)
    url = broker_url()
    os.environ["CELERY_BROKER_URL"] = url
    os.environ["REDIS_URL"] = url
    if "django.conf" in sys.modules and getattr(sys.modules["django.conf"].settings, "configured", False):
        raise pytest.UsageError("Django settings were loaded before tests.redis_broker set the broker URL")


def pytest_report_header(config):
    if SERVER is not None:
        return f"broker: private redis-server pid {SERVER.pid} at {SERVER.url} (dir {SERVER.dir})"
    return f"broker: {OPT_IN}={os.environ[OPT_IN]} (a Redis the suite did not start: only its own keys are deleted)"


def pytest_unconfigure(config):
    _stop()
