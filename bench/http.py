"""HTTP benchmark of search: "find similar" (GET /api/images/<pk>/similar) served
by gunicorn on loopback from a 100,000-image gallery, 8 concurrent clients.
(Run as a script, Python puts bench/ first on sys.path, where this file would
shadow the standard library's http package: every script in bench/ replaces
that entry with the repository root before importing anything.)

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/searchdb .venv/bin/python bench/http.py
    .venv/bin/python bench/http.py --items 20000 --duration 20     # quick, SQLite

The gallery's vectors are synthetic (clustered 512-d unit vectors, as
bench/search.py) written straight into the database with bulk_create; the index
is built by the product's own rebuild service (its time is reported too). The
gallery is kept between runs in the chosen database (delete it with --fresh).
gunicorn runs as `make web` does (2 workers x 4 threads). Each client thread
keeps one HTTP/1.1 connection, signs in with a session cookie (Basic auth
would hash the password on every request, and time the hash, not the search),
and asks for the 12 nearest of a random image, until --requests or --duration
is reached. The clients share the server's cores, so they are kept lean: a
plain socket reading responses by Content-Length (http.client parses each
response's headers with the email package: 0.4 ms of CPU per request here,
against 0.1 ms). Latency is measured per request at the client; p50/p99 and
every non-200 answer are reported, with the machine's load before and after and
the CPU time gunicorn, PostgreSQL and the clients spent per request (what a
request costs, whatever else the machine is running). A second, shorter phase measures
the floor in the same run: the same clients asking for an image that does not
exist (Django's request path and one image read that finds nothing, a 404);
the ratio of the two p50s depends less on how busy the shared machine is.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: see above

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from datetime import timedelta  # noqa: E402

import numpy as np  # noqa: E402

from bench.search import Clusters  # noqa: E402  (the same synthetic data)

SLUG = "bench-http"


def _index_usable(gallery, items):
    """True when the gallery's current build holds `items` and its files load here
    (a gallery kept from an earlier run may have its index in another var dir)."""
    import numpy as np

    from gallery import embedding
    from gallery.search import engine, store

    build = gallery.current_build()
    if build is None or build.item_count != items:
        return False
    ref = store.ref_for(build)
    try:
        engine.index_search(ref, np.ones(embedding.dim(), dtype=np.float32) / np.sqrt(embedding.dim()), 1)
    except store.IndexUnavailable:
        return False
    return True


def setup_gallery(items, fresh):
    """Create (or reuse) the benchmark gallery; return (owner, gallery, image pks)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from gallery import embedding, services
    from gallery.models import EmbeddingState, Gallery, Image, ModerationState
    from gallery.vectors import pack

    call_command("migrate", verbosity=0)
    User = get_user_model()
    owner, _ = User.objects.get_or_create(username="bench-owner")
    gallery = Gallery.objects.filter(slug=SLUG).first()
    if gallery is not None and (fresh or gallery.images.count() != items):
        gallery.delete()
        gallery = None
    if gallery is None:
        gallery = Gallery.objects.create(owner=owner, title="HTTP bench", slug=SLUG)
        vecs = Clusters(items, seed=items).sample(items, seed=1)  # (N, 512)
        version = embedding.version()
        at = timezone.now() - timedelta(hours=1)  # embedded well before the build: no delta
        t = time.perf_counter()
        for start in range(0, items, 2000):
            Image.objects.bulk_create(
                [
                    Image(
                        gallery=gallery,
                        file=f"images/bench/{start + i}.jpg",
                        original_name=f"{start + i}.jpg",
                        sha256=f"bench-{start + i}",
                        width=224,
                        height=224,
                        byte_size=1,
                        content_type="image/jpeg",
                        embedding_state=EmbeddingState.READY,
                        embedding=pack(v),
                        embedding_version=version,
                        embedded_at=at,
                        moderation_state=ModerationState.APPROVED,
                    )
                    for i, v in enumerate(vecs[start : start + 2000])
                ]
            )
        print(f"inserted {items:,} images in {time.perf_counter() - t:.1f} s")
    if not _index_usable(gallery, items):
        t = time.perf_counter()
        build = services.gallery_rebuild_index(gallery_id=gallery.pk)
        print(
            f"rebuild from the database: {build.item_count:,} items, {build.n_trees} trees, {time.perf_counter() - t:.1f} s "
            f"(index build {build.duration_seconds:.1f} s as recorded)"
        )
    from django.db import connection

    if connection.vendor == "postgresql":
        # Fresh statistics, as autovacuum would gather after a bulk import: without
        # them the planner scans the whole gallery for a 42-row lookup.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE gallery_image")
            cursor.execute("ANALYZE gallery_gallery")
    pks = list(gallery.images.values_list("pk", flat=True))
    return owner, gallery, pks


def session_cookie(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


class Client:
    """One keep-alive HTTP/1.1 connection: GET a path, return (status, body)."""

    def __init__(self, port, cookie):
        self.port = port
        self.headers = f"Host: 127.0.0.1:{port}\r\nCookie: {cookie}\r\nAccept: application/json\r\n\r\n".encode()
        self.sock = None

    def _connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data

    def get(self, path):
        if self.sock is None:
            self._connect()
        self.sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\n" + self.headers)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._fill()
        head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4 :]
        fields = dict(line.split(":", 1) for line in head.split("\r\n")[1:])
        fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
        if "content-length" not in fields:
            raise ConnectionError(f"no Content-Length in the response: {head!r}")
        length = int(fields["content-length"])
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        if fields.get("connection", "").lower() == "close":  # gunicorn's sync worker: one request per connection
            self.close()
        return int(head[9:12]), body

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def cpu_seconds():
    """CPU seconds (user + system) used so far, per process group and per PostgreSQL process.

    Returns ({pgid: seconds}, {pid: seconds} of PostgreSQL's processes): gunicorn
    is one process group; PostgreSQL's backends are counted when the server runs
    on this host.
    """
    tick = os.sysconf("SC_CLK_TCK")
    groups, postgres = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            head, _, rest = open(f"/proc/{entry}/stat").read().rpartition(")")
        except OSError:
            continue
        fields = rest.split()
        used = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        groups[int(fields[2])] = groups.get(int(fields[2]), 0.0) + used  # field 5 of stat: the process group
        if head.partition("(")[2] == "postgres":
            postgres[int(entry)] = used
    return groups, postgres


def postgres_cpu_between(before, after):
    """CPU seconds PostgreSQL's processes used between two cpu_seconds() readings.
    A process that ended in between is left out (its last seconds cannot be read)."""
    return sum(used - before.get(pid, 0.0) for pid, used in after.items())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=6000, help="stop after this many requests in all")
    parser.add_argument("--duration", type=float, default=90.0, help="or after this many seconds")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument(
        "--floor-duration",
        type=float,
        default=15.0,
        help="then this many seconds of requests that stop before the search (404), for the ratio; 0 skips",
    )
    parser.add_argument("--fresh", action="store_true", help="recreate the gallery")
    parser.add_argument("--setup-only", action="store_true", help="create the gallery and its index, then stop")
    args = parser.parse_args()

    var = Path(os.environ.get("IMAGESEARCH_VAR_DIR") or tempfile.mkdtemp(prefix="bench-http-"))
    env = dict(os.environ)
    env.setdefault("IMAGESEARCH_VAR_DIR", str(var))
    env.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
    env.setdefault("IMAGESEARCH_VGG16_WEIGHTS", "none")
    env["DJANGO_DEBUG"] = "0"
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagesearch.settings")
    import django

    django.setup()
    from django.db import connection

    owner, gallery, pks = setup_gallery(args.items, args.fresh)
    cookie = session_cookie(owner)
    print(f"database: {connection.vendor}; gallery {gallery.slug}: {len(pks):,} images")
    connection.close()
    if args.setup_only:
        return

    cmd = [
        str(ROOT / ".venv/bin/gunicorn"),
        "imagesearch.wsgi",
        "--bind",
        f"127.0.0.1:{args.port}",
        "--workers",
        str(args.workers),
        "--threads",
        str(args.threads),
        "--log-level",
        "warning",
    ]
    log = open(var / "gunicorn.log", "ab")
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = Client(args.port, cookie)
                status, _ = conn.get(f"/api/galleries/{SLUG}/status")
                conn.close()
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"gunicorn did not answer; see {var / 'gunicorn.log'}")
            time.sleep(0.5)
        # Warm-up: every worker process verifies and maps the index on its first query.
        rng = random.Random(0)
        conn = Client(args.port, cookie)
        t = time.perf_counter()
        for _ in range(40):
            status, body = conn.get(f"/api/images/{rng.choice(pks)}/similar")
            assert status == 200 and len(json.loads(body)["results"]) == 12, (status, body[:300])
        conn.close()
        print(f"warm-up: 40 requests in {time.perf_counter() - t:.1f} s")

        def phase(label, path_for, expect, duration, requests):
            """Run the clients for `duration` s or `requests` requests; print what they saw and what it cost."""
            load_before = os.getloadavg()
            latencies, errors = [], []
            lock = threading.Lock()
            stop_at = time.monotonic() + duration
            budget = [requests]

            def client(seed):
                r = random.Random(seed)
                conn = Client(args.port, cookie)
                mine = []
                while time.monotonic() < stop_at:
                    with lock:
                        if budget[0] <= 0:
                            break
                        budget[0] -= 1
                    path = path_for(r)
                    t0 = time.perf_counter()
                    try:
                        status, body = conn.get(path)
                    except (OSError, ValueError) as exc:
                        conn.close()
                        conn = Client(args.port, cookie)
                        status, body = None, repr(exc).encode()
                    mine.append(time.perf_counter() - t0)
                    if (status, body[: len(expect[1])]) != expect:
                        with lock:
                            errors.append((path, status, body[:200]))
                conn.close()
                with lock:
                    latencies.extend(mine)

            t = time.perf_counter()
            groups, db_cpu = cpu_seconds()
            server_cpu = groups.get(server.pid, 0.0)
            client_cpu = time.process_time()
            threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(duration + 60)
            wall = time.perf_counter() - t
            groups, db_after = cpu_seconds()
            server_cpu = groups.get(server.pid, 0.0) - server_cpu
            db_cpu = postgres_cpu_between(db_cpu, db_after)
            client_cpu = time.process_time() - client_cpu
            ms = np.array(latencies) * 1e3
            print(f"{label}:")
            print(
                f"  load (1/5/15 min) before {tuple(round(x, 2) for x in load_before)}, after {tuple(round(x, 2) for x in os.getloadavg())}"
            )
            print(
                f"  {len(ms)} requests, {args.clients} clients, {wall:.1f} s, {len(ms) / wall:.0f} req/s: "
                f"p50 {np.percentile(ms, 50):.1f} ms, p90 {np.percentile(ms, 90):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms, "
                f"max {ms.max():.1f} ms; errors {len(errors)}"
            )
            n = max(len(ms), 1)
            print(
                f"  CPU per request: server {server_cpu / n * 1e3:.1f} ms, PostgreSQL {db_cpu / n * 1e3:.1f} ms, "
                f"clients {client_cpu / n * 1e3:.1f} ms "
                f"(server {server_cpu:.0f} CPU-s, i.e. {server_cpu / wall:.2f} of the {os.cpu_count()} cores, over {wall:.0f} s)"
            )
            for e in errors[:5]:
                print("  error:", e)
            return float(np.percentile(ms, 50))

        p50 = phase(
            "find similar (GET /api/images/<random id>/similar, k = 12)",
            lambda r: f"/api/images/{r.choice(pks)}/similar",
            (200, b'{"query": '),
            args.duration,
            args.requests,
        )
        if args.floor_duration > 0:
            floor = phase(
                "floor, the same clients and server (GET /api/images/0/similar: routing and one image read "
                "that finds nothing, 404)",
                lambda r: "/api/images/0/similar",
                (404, b'{"error": '),
                args.floor_duration,
                args.requests,
            )
            print(f"find similar p50 / floor p50: {p50 / floor:.2f}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


if __name__ == "__main__":
    main()
