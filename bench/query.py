"""Benchmark of search with an outside picture, through the page (POST, then the 303's GET).

    .venv/bin/python bench/query.py                      # 10k gallery, 3 cold starts, 30 warm searches
    .venv/bin/python bench/query.py --busy 48            # and while an embed worker works, with and without nice

Everything runs as `make run` runs it, in a temporary var dir (SQLite) with a private
redis-server on a free port: the web server and the query worker are the Procfile's
entries started through scripts/proc.sh.

- cold: a fresh query worker is started and waited for (its log says the model is
  loaded), then a fresh web server; as soon as the web answers, the first outside
  search is timed (the two gunicorn workers are both cold then: the readiness probe
  warms at most one of them). Repeated --cold times, each with new processes.
- warm: --warm searches in a row on the last pair of processes: p50 and p95 of the
  page flow (POST + GET of the results' URL) and of the JSON API (one POST).
- baselines, in the same run: the model's forward pass at batch 1 inside the query
  worker (its log line "query embedded in N ms" for each of the warm searches), and
  the old in-process path in this process (the model loaded on the first search,
  then decode + forward pass + search in the calling process).
- --busy N: warm searches while the embed worker (the Procfile's `worker` entry)
  embeds N uploads, once as the Procfile runs it and once under `nice -n 10`.

The gallery's vectors are synthetic (bench/http.py's setup); the query picture is a
generated 640x480 JPEG.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: bench/http.py would shadow the standard library's http

import argparse  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

CSRF = "b" * 32  # an unmasked CSRF secret, sent as cookie and header


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pct(values, q):
    return float(np.percentile(np.asarray(values) * 1000, q))


class Proc:
    """A Procfile entry through scripts/proc.sh (as `make run`), in its own process group, logging to a file."""

    def __init__(self, name, env, log, prefix=()):
        self.log_path = log
        self.fh = open(log, "ab")
        cmd = [*prefix, "bash", "scripts/proc.sh", name]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self.fh, stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self):
        return Path(self.log_path).read_text(errors="replace")

    def wait_for(self, text, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.log_path}: exited\n{self.output()[-3000:]}")
            time.sleep(0.05)
        raise SystemExit(f"{self.log_path}: no {text!r} after {timeout} s\n{self.output()[-3000:]}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.fh.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--cold", type=int, default=3)
    parser.add_argument("--warm", type=int, default=30)
    parser.add_argument("--busy", type=int, default=0, help="uploads to embed during the busy phases (0: skip)")
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="bench-query-"))
    redis_port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    broker = f"redis://127.0.0.1:{redis_port}/0"
    env = {
        **os.environ,
        "IMAGESEARCH_ENV_FILE": "/dev/null",
        "DJANGO_SECRET_KEY": "bench-query-secret-key",
        "DJANGO_DEBUG": "0",
        "IMAGESEARCH_VGG16_WEIGHTS": "none",
        "IMAGESEARCH_VAR_DIR": str(var),
        "IMAGESEARCH_STATIC_ROOT": str(var / "static"),
        "REDIS_URL": broker,
        "CELERY_BROKER_URL": broker,
        "IMAGESEARCH_EAGER": "0",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
        "HOST": "127.0.0.1",
    }
    env.pop("DATABASE_URL", None)
    os.environ.update(env)
    os.environ.pop("DATABASE_URL", None)
    procs = []
    try:
        run(args, env, var, procs)
    finally:
        for p in procs:
            p.stop()
        redis.terminate()
        redis.wait()
        shutil.rmtree(var, ignore_errors=True)


def run(args, env, var, procs):
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagesearch.settings")
    django.setup()
    import requests
    from django.conf import settings
    from django.test import Client as DjangoClient

    from bench.http import setup_gallery
    from tests import imagegen

    print(f"load average at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; var {var}")
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    owner, gallery, _pks = setup_gallery(args.items, fresh=True)
    client = DjangoClient()
    client.force_login(owner)
    cookies = {"sessionid": client.cookies["sessionid"].value, "csrftoken": CSRF}
    picture = imagegen.encode(imagegen.near_duplicate(imagegen.scene(7, size=(640, 480)), 2))
    search_path = f"/g/{gallery.slug}/search/?k=12"
    api_path = f"/api/galleries/{gallery.slug}/search?k=12"

    def page_search(base):
        files = {"image": ("query.jpg", picture, "image/jpeg")}
        t = time.perf_counter()
        r = requests.post(
            base + search_path, files=files, cookies=cookies, headers={"X-CSRFToken": CSRF}, allow_redirects=False
        )
        if r.status_code != 303:
            raise SystemExit(f"search answered {r.status_code}: {r.text[:2000]}")
        page = requests.get(base + r.headers["Location"], cookies=cookies)
        elapsed = time.perf_counter() - t
        assert page.status_code == 200 and 'class="card result"' in page.text, page.status_code
        return elapsed

    def api_search(base):
        files = {"image": ("query.jpg", picture, "image/jpeg")}
        t = time.perf_counter()
        r = requests.post(base + api_path, files=files, cookies=cookies, headers={"X-CSRFToken": CSRF})
        elapsed = time.perf_counter() - t
        assert r.status_code == 200 and len(r.json()["results"]) == 12 and r.json()["url"], r.text[:500]
        return elapsed

    def start_pair(n):
        worker = Proc("query-worker", env, var / f"query-worker-{n}.log")
        procs.append(worker)
        t = time.perf_counter()
        worker.wait_for("model loaded", timeout=300)
        worker.wait_for("ready.", timeout=60)
        worker_ready = time.perf_counter() - t
        port = free_port()
        web = Proc("web", {**env, "PORT": str(port)}, var / f"web-{n}.log")
        procs.append(web)
        base = f"http://127.0.0.1:{port}"
        t = time.perf_counter()
        while True:
            try:
                if requests.get(base + "/accounts/login/", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if web.proc.poll() is not None:
                raise SystemExit(web.output()[-3000:])
            time.sleep(0.05)
        web_ready = time.perf_counter() - t
        return worker, web, base, worker_ready, web_ready

    cold = []
    for n in range(args.cold):
        worker, web, base, worker_ready, web_ready = start_pair(n)
        first = page_search(base)
        second = page_search(base)
        cold.append(first)
        print(
            f"cold {n + 1}: query worker ready in {worker_ready:.1f} s, web answered in {web_ready:.1f} s; "
            f"first outside search {first * 1000:.0f} ms, second {second * 1000:.0f} ms"
        )
        if n < args.cold - 1:
            web.stop()
            worker.stop()

    page_times = [page_search(base) for _ in range(args.warm)]
    api_times = [api_search(base) for _ in range(args.warm)]
    time.sleep(0.5)
    model = [float(ms) / 1000 for ms in re.findall(r"query embedded in (\d+) ms", worker.output())]
    model = model[-(2 * args.warm) :]  # the warm searches' forward passes
    task = [float(s) for s in re.findall(r"embed_query\[[^\]]+\] succeeded in ([0-9.]+)s", worker.output())]
    task = task[-(2 * args.warm) :]
    print(f"load average after the warm searches: {os.getloadavg()[0]:.2f}")
    print()
    print(f"gallery: {args.items:,} images; query picture 640x480 JPEG, {len(picture):,} bytes; k=12")
    print(
        f"cold first search (page: POST + GET), {args.cold} starts: "
        + ", ".join(f"{c * 1000:.0f}" for c in cold)
        + " ms"
    )
    print(f"warm page (POST + GET), {args.warm}: p50 {pct(page_times, 50):.0f} ms, p95 {pct(page_times, 95):.0f} ms")
    print(f"warm API (POST),        {args.warm}: p50 {pct(api_times, 50):.0f} ms, p95 {pct(api_times, 95):.0f} ms")
    print(f"  the query worker's embed_query task: p50 {pct(task, 50):.0f} ms ({len(task)} tasks)")
    print(
        f"  baseline, forward pass at batch 1 in the query worker: p50 {pct(model, 50):.0f} ms, p95 {pct(model, 95):.0f} ms"
    )
    print(f"  warm page p50 / forward pass p50 = {pct(page_times, 50) / pct(model, 50):.2f}")
    print(f"  warm API p50 / forward pass p50 = {pct(api_times, 50) / pct(model, 50):.2f}")

    if args.busy:
        busy(args, env, var, procs, base, page_search, owner, model)

    web.stop()
    worker.stop()

    # The old path: the model in the calling process, loaded by its first search.
    from gallery import search
    from gallery.search import queries

    settings.IMAGESEARCH_QUERY_IN_PROCESS = True

    def old_path():
        t = time.perf_counter()
        vector = queries.outside_vector(picture).vector
        search.search_vector(user=owner, gallery=gallery, vector=vector, k=12)
        return time.perf_counter() - t

    old_cold = old_path()
    old_warm = [old_path() for _ in range(args.warm)]
    print()
    print(f"old in-process path, this process: first search {old_cold * 1000:.0f} ms (loads the model); ")
    print(f"  warm {args.warm}: p50 {pct(old_warm, 50):.0f} ms, p95 {pct(old_warm, 95):.0f} ms (no HTTP)")
    print(
        f"cold: old first search / new first search (median of {args.cold}) = {old_cold / float(np.median(cold)):.1f}"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


def busy(args, env, var, procs, base, page_search, owner, model):
    """Warm searches while the embed worker embeds --busy uploads: as the Procfile runs it, then under nice."""
    from gallery import services
    from tests import imagegen

    print()
    for label, prefix in (
        ("embed worker as in the Procfile", ()),
        ("embed worker under nice -n 10", ("nice", "-n", "10")),
    ):
        target = services.gallery_create(owner=owner, title=f"busy {label}")
        for i in range(args.busy):
            services.image_create(gallery=target, uploader=owner, data=imagegen.photo_jpeg("busy", i), name=f"{i}.jpg")
        embedder = Proc("worker", env, var / f"embed-worker-{len(procs)}.log", prefix=prefix)
        procs.append(embedder)
        embedder.wait_for("model loaded", timeout=300)
        embedder.wait_for("gallery.tasks.embed_images", timeout=120)  # a batch is running
        time.sleep(2)
        times = [page_search(base) for _ in range(max(10, args.warm // 2))]
        remaining = target.images.exclude(embedding_state="ready").count()
        embedder.stop()
        print(
            f"{label}: warm page p50 {pct(times, 50):.0f} ms, p95 {pct(times, 95):.0f} ms over {len(times)} searches "
            f"({remaining} of {args.busy} uploads still unembedded at the end; load {os.getloadavg()[0]:.2f})"
        )
        services.gallery_delete(gallery=target)


if __name__ == "__main__":
    main()
