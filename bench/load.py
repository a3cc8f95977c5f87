"""Load: many people using imagesearch at once, against real processes on loopback.

Starts a private redis-server, gunicorn (2 workers x 4 threads, as `make web`)
and one `celery worker` with beat (as the tests do), then runs N concurrent
clients for a bounded time. Each client signs in with a session and loops over
a mix of requests:

    upload   POST /api/galleries/<slug>/images with 1-2 new JPEGs
    gallery  GET  /g/<slug>/?page=<n>
    similar  GET  /i/<pk>/similar/   ("Find similar" on an uploaded image)

It reports requests/s, p50/p95/p99 latency per kind and every error (the
target is zero), then waits (bounded) until every uploaded image is ready and
checks that each one is findable: searching its gallery with the image's own
bytes returns it first.

    .venv/bin/python bench/load.py                      # 16 clients, 10 minutes
    .venv/bin/python bench/load.py --clients 4 --duration 30
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loaddb .venv/bin/python bench/load.py

Without DATABASE_URL it uses SQLite in the run directory (var/bench-load-<time>).
"""

import sys
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where a module named
# like a standard one (bench/http.py) would shadow it: look from the root instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

KINDS = ("upload", "gallery", "similar")
DEFAULT_MIX = {"upload": 0.2, "gallery": 0.4, "similar": 0.4}
IMAGE_SIZE = (320, 240)


@dataclass
class Uploaded:
    pk: int
    slug: str
    seed: int


@dataclass
class Report:
    clients: int
    duration: float
    latencies: dict = field(default_factory=lambda: defaultdict(list))
    errors: list = field(default_factory=list)
    uploaded: list = field(default_factory=list)

    @property
    def requests(self):
        return sum(len(v) for v in self.latencies.values())

    def summary(self):
        kinds = {}
        for kind in KINDS:
            lat = np.asarray(self.latencies.get(kind, []), dtype=np.float64) * 1000.0  # (n,) ms
            errors = sum(1 for e in self.errors if e["kind"] == kind)
            if len(lat):
                p50, p95, p99 = np.percentile(lat, [50, 95, 99])
                kinds[kind] = {
                    "requests": len(lat),
                    "errors": errors,
                    "per_second": round(len(lat) / self.duration, 2),
                    "p50_ms": round(float(p50), 1),
                    "p95_ms": round(float(p95), 1),
                    "p99_ms": round(float(p99), 1),
                }
            else:
                kinds[kind] = {"requests": 0, "errors": errors}
        return {
            "clients": self.clients,
            "duration_s": round(self.duration, 1),
            "requests": self.requests,
            "requests_per_second": round(self.requests / self.duration, 2),
            "errors": len(self.errors),
            "error_samples": self.errors[:10],
            "images_uploaded": len(self.uploaded),
            "kinds": kinds,
        }


def image_bytes(seed):
    from tests import imagegen

    return imagegen.jpeg(seed, size=IMAGE_SIZE)


class _Shared:
    """What the clients share: the images uploaded so far, the report, a lock."""

    def __init__(self, report, max_images):
        self.report = report
        self.max_images = max_images
        self.lock = threading.Lock()
        self.next_seed = 1_000_000

    def seeds(self, n):
        with self.lock:
            if len(self.report.uploaded) >= self.max_images:
                return []
            start = self.next_seed
            self.next_seed += n
            return list(range(start, start + n))

    def record(self, kind, seconds, error=None):
        with self.lock:
            self.report.latencies[kind].append(seconds)
            if error is not None:
                self.report.errors.append({"kind": kind, "error": error})

    def add(self, items):
        with self.lock:
            self.report.uploaded.extend(items)

    def pick(self, rng):
        with self.lock:
            return rng.choice(self.report.uploaded) if self.report.uploaded else None


def _client_loop(client, slug, shared, rng, deadline, mix, think):
    kinds, weights = zip(*mix.items())
    while time.monotonic() < deadline:
        kind = rng.choices(kinds, weights)[0]
        target = shared.pick(rng) if kind == "similar" else None
        seeds = shared.seeds(rng.choice((1, 2))) if kind == "upload" else None
        if (kind == "similar" and target is None) or (kind == "upload" and not seeds):
            kind = "gallery"
        started = time.monotonic()
        error = None
        try:
            if kind == "upload":
                response = client.upload(slug, [(f"load-{s}.jpg", image_bytes(s)) for s in seeds])
                if response.status_code != 200:
                    error = f"HTTP {response.status_code}: {response.text[:200]}"
                else:
                    results = response.json()["results"]
                    bad = [r for r in results if r["status"] != "added"]
                    if bad:
                        error = f"upload results {bad}"
                    shared.add([Uploaded(r["id"], slug, s) for r, s in zip(results, seeds) if r["status"] == "added"])
            elif kind == "gallery":
                page = rng.randint(1, 3)
                response = client.get(f"/g/{slug}/?page={page}")
                if response.status_code != 200:
                    error = f"HTTP {response.status_code}"
            else:
                response = client.get(f"/i/{target.pk}/similar/")
                if response.status_code != 200:
                    error = f"HTTP {response.status_code}"
        except Exception as exc:  # a timeout or a dropped connection is an error to report, not a crash
            error = f"{type(exc).__name__}: {exc}"
        shared.record(kind, time.monotonic() - started, error)
        if think:
            time.sleep(think)


def run(
    *, base_url, username, password, slugs, clients=16, duration=600.0, mix=None, think=0.0, max_images=3000, seed=0
):
    """Run `clients` signed-in clients against `base_url` for `duration` seconds; return a Report."""
    from tests.live import HttpClient

    mix = mix or DEFAULT_MIX
    sessions = [HttpClient(base_url).login(username, password) for _ in range(clients)]
    report = Report(clients=clients, duration=duration)
    shared = _Shared(report, max_images)
    started = time.monotonic()
    deadline = started + duration
    threads = [
        threading.Thread(
            target=_client_loop,
            args=(sessions[i], slugs[i % len(slugs)], shared, random.Random(seed * 1000 + i), deadline, mix, think),
            daemon=True,
        )
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration + 300)  # a request may be in flight at the deadline (timeout 120 s)
    report.duration = time.monotonic() - started
    return report


def wait_until_ready(uploaded, timeout):
    """Wait until every uploaded image is ready; return (ready count, seconds waited)."""
    from gallery.models import EmbeddingState, Image

    ids = [u.pk for u in uploaded]
    started = time.monotonic()
    deadline = started + timeout
    while True:
        ready = Image.objects.filter(pk__in=ids, embedding_state=EmbeddingState.READY).count()
        if ready == len(ids) or time.monotonic() > deadline:
            return ready, time.monotonic() - started
        time.sleep(2)


def wait_until_indexed(slugs, timeout):
    """Wait until each gallery's current index holds all its ready images; return True if so."""
    from gallery.models import EmbeddingState, Gallery, IndexBuild

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = True
        for gallery in Gallery.objects.filter(slug__in=slugs):
            ready = gallery.images.filter(embedding_state=EmbeddingState.READY).count()
            build = IndexBuild.objects.filter(gallery=gallery, status="ready").order_by("-version").first()
            if gallery.index_dirty or build is None or build.item_count != ready:
                done = False
        if done:
            return True
        time.sleep(2)
    return False


def verify_findable(*, base_url, username, password, uploaded, workers=8):
    """Search each image's gallery with its own bytes; return the images not found first."""
    from tests.live import HttpClient

    local = threading.local()

    def check(item):
        if not hasattr(local, "client"):
            local.client = HttpClient(base_url).login(username, password)
        try:
            response = local.client.post(
                f"/api/galleries/{item.slug}/search?k=3",
                files={"image": (f"load-{item.seed}.jpg", image_bytes(item.seed), "image/jpeg")},
            )
            results = response.json().get("results", []) if response.status_code == 200 else []
        except Exception as exc:
            return {"id": item.pk, "error": f"{type(exc).__name__}: {exc}"}
        if not results or results[0]["id"] != item.pk:
            return {"id": item.pk, "status": response.status_code, "top": results[:2]}
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [r for r in pool.map(check, uploaded) if r is not None]


def _print_summary(summary):
    print(
        f"\n{summary['clients']} clients, {summary['duration_s']} s: {summary['requests']} requests, "
        f"{summary['requests_per_second']} req/s, {summary['errors']} errors, {summary['images_uploaded']} images uploaded"
    )
    print(f"{'kind':<8} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for kind, k in summary["kinds"].items():
        if k["requests"]:
            print(
                f"{kind:<8} {k['requests']:>8} {k['per_second']:>7} {k['p50_ms']:>8} {k['p95_ms']:>8} {k['p99_ms']:>8} {k['errors']:>6}"
            )
    for sample in summary["error_samples"]:
        print("  error:", sample)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--galleries", type=int, default=4)
    parser.add_argument("--think", type=float, default=0.0, help="pause between a client's requests, seconds")
    parser.add_argument("--max-images", type=int, default=3000, help="stop uploading after this many images")
    parser.add_argument("--settle-timeout", type=float, default=1800.0, help="longest wait for the backlog, seconds")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument(
        "--verify-sample",
        type=int,
        default=0,
        help="check findability of this many random uploads (default 0: all; each check embeds one image)",
    )
    parser.add_argument("--json", help="also write the summary to this file")
    args = parser.parse_args()

    run_dir = ROOT / "var" / f"bench-load-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True)
    import secrets

    os.environ.update(
        DJANGO_SETTINGS_MODULE="imagesearch.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50),
        IMAGESEARCH_VAR_DIR=str(run_dir),
        IMAGESEARCH_VGG16_WEIGHTS=os.environ.get("IMAGESEARCH_VGG16_WEIGHTS", "none"),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    from tests import live

    broker = live.RedisServer(run_dir).start()
    os.environ["CELERY_BROKER_URL"] = broker.url

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from gallery import services

    call_command("migrate", verbosity=0)
    password = secrets.token_urlsafe(16)
    user = get_user_model().objects.create_user(username=f"load-{run_dir.name[-6:]}", password=password)
    slugs = [services.gallery_create(owner=user, title=f"Load {run_dir.name} {i}").slug for i in range(args.galleries)]
    print(f"run directory {run_dir}; database {django.db.connection.vendor}; broker {broker.url}")

    web = live.Web(run_dir, workers=args.web_workers, threads=args.web_threads)
    worker = live.Worker(run_dir)
    try:
        web.start()
        worker.start()
        print(
            f"gunicorn {web.url} ({args.web_workers}x{args.web_threads}), worker up; {args.clients} clients for {args.duration:.0f} s"
        )
        report = run(
            base_url=web.url,
            username=user.username,
            password=password,
            slugs=slugs,
            clients=args.clients,
            duration=args.duration,
            think=args.think,
            max_images=args.max_images,
        )
        summary = report.summary()
        _print_summary(summary)

        ready, waited = wait_until_ready(report.uploaded, args.settle_timeout)
        indexed = wait_until_indexed(slugs, timeout=300) if ready == len(report.uploaded) else False
        print(f"ready: {ready}/{len(report.uploaded)} after {waited:.0f} s more; indexes current: {indexed}")
        checked = report.uploaded
        if 0 < args.verify_sample < len(checked):
            checked = random.Random(0).sample(checked, args.verify_sample)
        started = time.monotonic()
        missing = verify_findable(base_url=web.url, username=user.username, password=password, uploaded=checked)
        print(
            f"findable (own bytes ranked first): {len(checked) - len(missing)}/{len(checked)} checked "
            f"of {len(report.uploaded)} uploaded, in {time.monotonic() - started:.0f} s"
        )
        for m in missing[:10]:
            print("  not found:", m)
        summary.update(
            ready=ready,
            settle_seconds=round(waited, 1),
            indexes_current=indexed,
            findable_checked=len(checked),
            not_findable=len(missing),
        )
    finally:
        worker.stop()
        web.stop()
        broker.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    ok = summary["errors"] == 0 and summary["ready"] == len(report.uploaded) and not missing
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
