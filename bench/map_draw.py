"""Map page smoothness: frame and draw times of static/gallery/map.js at 100k points in Chromium.

    .venv/bin/python bench/map_draw.py                  # 100k points
    .venv/bin/python bench/map_draw.py --points 10000

One process: a temporary SQLite database and index folder, a public gallery of
--points Image rows (no files: the map needs none) with a ready build and a
MapBuild whose coordinates file is bench/search.py's clustered vectors laid out
by PCA (gallery.analysis.layout), served by Django's threaded WSGI server on
127.0.0.1. Debian's Chromium (headless, software rendering: --disable-gpu, as
the browser tests run it) opens the map page as an anonymous visitor; every
thumbnail request is answered with one small JPEG by Playwright, so the zoomed
in phase draws real images without the server's thumbnail path being measured.

Phases, each a scripted input sequence, while a requestAnimationFrame probe
in the page records the interval between frames, and map.js its own draw time
per frame (window.imagesearchMap.stats()):
- pan: 120 mouse moves of a drag across the canvas, one per frame;
- zoom: 60 wheel steps in, then 60 out, about the centre;
- zoomed in: pan of 60 moves at a zoom where thumbnails are drawn.
Figures per phase: frames, median / p95 / max frame interval (60 Hz is 16.7 ms),
median / p95 / max draw time, the share of frames longer than 33 ms, and
frames per second over the phase. Baseline in the same run: the frame interval
of an idle page (the probe alone), what the machine gives any page.

Also: the size and load time of the coordinates file, and the time from
navigation to the first drawn frame.
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.calibration import setup_django  # noqa: E402
from bench.search import Clusters  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run", "--disable-sync"]

PROBE = """() => { window.__frames = []; let last = performance.now();
  function tick(t) { window.__frames.push(t - last); last = t; if (window.__probe) requestAnimationFrame(tick); }
  window.__probe = true; requestAnimationFrame(tick); }"""


def make_world(n, seed):
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from gallery.analysis import layout
    from gallery.models import EmbeddingState, Gallery, Image, IndexBuild, MapBuild, ModerationState

    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user("bench", password="bench-password-1")
    gallery = Gallery.objects.create(owner=owner, title="Bench map", slug="bench-map", visibility="public")
    now = timezone.now()
    rows = [
        Image(
            gallery=gallery,
            file=f"images/{gallery.pk}/b{i}.jpg",
            original_name=f"photo-{i:06d}.jpg",
            sha256=f"bench-{i}",
            width=640,
            height=480,
            byte_size=1000,
            content_type="image/jpeg",
            embedding_state=EmbeddingState.READY,
            embedding_version="bench",
            embedded_at=now,
            moderation_state=ModerationState.APPROVED,
        )
        for i in range(n)
    ]
    Image.objects.bulk_create(rows, batch_size=5000)
    ids = np.array(sorted(Image.objects.filter(gallery=gallery).values_list("pk", flat=True)), dtype=np.int64)
    vectors = Clusters(n, seed=seed).sample(n, seed=seed + 1)
    xy = layout.layout(vectors, "pca", seed=seed)
    build = IndexBuild.objects.create(
        gallery=gallery, version=1, item_count=n, snapshot_at=now, embedding_version="bench"
    )
    written = layout.write(gallery.pk, 1, ids, xy)
    MapBuild.objects.create(
        gallery=gallery, build=build, item_count=n, file=written.name, size_bytes=written.size_bytes
    )
    Gallery.objects.filter(pk=gallery.pk).update(current_index=build)
    return gallery, written.size_bytes


def serve():
    from socketserver import ThreadingMixIn

    from django.core.servers.basehttp import WSGIRequestHandler, WSGIServer, get_internal_wsgi_application

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    class Threaded(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    server = Threaded(("127.0.0.1", 0), Quiet)
    server.set_app(get_internal_wsgi_application())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def summary(intervals, draws):
    iv, dr = np.asarray(intervals[1:] or [0.0]), np.asarray(draws or [0.0])
    return {
        "frames": int(len(iv)),
        "interval_ms": {
            "median": round(float(np.median(iv)), 2),
            "p95": round(float(np.percentile(iv, 95)), 2),
            "max": round(float(iv.max()), 2),
        },
        "draw_ms": {
            "median": round(float(np.median(dr)), 2),
            "p95": round(float(np.percentile(dr, 95)), 2),
            "max": round(float(dr.max()), 2),
        },
        "over_33ms": round(float((iv > 33.4).mean()), 3),
        "fps": round(1000.0 * len(iv) / max(float(iv.sum()), 1e-9), 1),
    }


def phase(page, action):
    page.evaluate(PROBE)
    before = page.evaluate("() => window.imagesearchMap.stats().drawMs.length")
    frames_before = page.evaluate("() => window.imagesearchMap.stats().frames")
    action()
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    intervals = page.evaluate("() => { window.__probe = false; return window.__frames; }")
    stats = page.evaluate("() => window.imagesearchMap.stats()")
    drawn = stats["frames"] - frames_before
    draws = stats["drawMs"][-drawn:] if drawn else []
    del before
    return summary(intervals, draws)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    os.environ["DJANGO_DEBUG"] = "1"  # plain static files (no collected manifest) for this one-off server
    with tempfile.TemporaryDirectory() as var:
        os.environ["DATABASE_URL"] = f"sqlite:///{var}/bench.sqlite3"
        setup_django(Path(var))
        started = time.perf_counter()
        gallery, size = make_world(args.points, args.seed)
        print(
            f"{args.points} points: world made in {time.perf_counter() - started:.1f} s, coordinates file {size / 1e6:.2f} MB"
        )
        server = serve()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        from playwright.sync_api import sync_playwright

        from tests import imagegen

        thumb = imagegen.jpeg(3)
        report = {"points": args.points, "file_bytes": size}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/thumb", lambda route: route.fulfill(status=200, content_type="image/jpeg", body=thumb))
            t0 = time.perf_counter()
            with page.expect_response(lambda r: r.url.endswith("points.bin")) as got:
                page.goto(f"{base}/g/{gallery.slug}/map/")
            points_seconds = time.perf_counter() - t0
            page.wait_for_selector("#map[data-ready='1']")
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            report["first_frame_s"] = round(time.perf_counter() - t0, 3)
            report["points_response_s"] = round(points_seconds, 3)
            report["points_bytes_served"] = len(got.value.body())
            box = page.locator("#map-canvas").bounding_box()
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            report["idle"] = phase(page, lambda: page.wait_for_timeout(2000))

            def pan(moves=120):
                page.mouse.move(cx - 300, cy)
                page.mouse.down()
                for i in range(moves):
                    page.mouse.move(cx - 300 + 600 * i / moves, cy + 100 * np.sin(i / 10))
                    page.evaluate("() => new Promise(r => requestAnimationFrame(r))")
                page.mouse.up()

            def zoom():
                page.mouse.move(cx, cy)
                for step in (-120,) * 60 + (120,) * 60:
                    page.mouse.wheel(0, step)
                    page.evaluate("() => new Promise(r => requestAnimationFrame(r))")

            report["pan"] = phase(page, pan)
            report["zoom"] = phase(page, zoom)
            page.locator("#map-reset").click()
            # Zoom in about one point (it stays under the cursor), deep enough that few are in view: thumbnails.
            at = page.evaluate(
                "() => window.imagesearchMap.screenPosition(window.imagesearchMap.ids()[12345 % window.imagesearchMap.count()])"
            )
            page.mouse.move(box["x"] + at["x"], box["y"] + at["y"])
            for _ in range(80):
                page.mouse.wheel(0, -150)
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                if page.locator("#map").get_attribute("data-thumbs") == "1":
                    break
            page.wait_for_timeout(1500)  # thumbnails load
            report["zoomed_in_view"] = int(page.locator("#map").get_attribute("data-in-view"))
            report["zoomed_in_thumbs"] = page.locator("#map").get_attribute("data-thumbs") == "1"
            report["zoomed_in_pan"] = phase(page, lambda: pan(60))
            shot = ROOT / "test-artifacts" / "bench-map-draw.png"
            shot.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(shot))
            browser.close()
        server.shutdown()
    for key in ("idle", "pan", "zoom", "zoomed_in_pan"):
        s = report[key]
        print(
            f"  {key:14s} {s['frames']:4d} frames, {s['fps']:5.1f} fps; interval median {s['interval_ms']['median']:.1f} "
            f"p95 {s['interval_ms']['p95']:.1f} max {s['interval_ms']['max']:.1f} ms; draw median {s['draw_ms']['median']:.1f} "
            f"p95 {s['draw_ms']['p95']:.1f} max {s['draw_ms']['max']:.1f} ms; frames > 33 ms: {s['over_33ms']:.1%}"
        )
    print(
        f"  points.bin {report['points_bytes_served'] / 1e6:.2f} MB in {report['points_response_s']:.2f} s; first frame "
        f"{report['first_frame_s']:.2f} s after navigation; zoomed in: {report['zoomed_in_view']} points in view, "
        f"thumbnails {'drawn' if report['zoomed_in_thumbs'] else 'not drawn'}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
