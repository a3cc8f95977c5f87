"""Embeddings export: how long gallery.services.exports takes, and in how much memory, against a naive export.

    .venv/bin/python bench/exports.py --images 100000           # the target size: 100k x 512
    .venv/bin/python bench/exports.py --images 10000            # a quick check

In one process, on a fresh SQLite database in a scratch folder:

1. Data: --images ready images of one gallery, each with a random 512-d unit
   vector (float32) as its stored embedding, bulk-inserted in chunks.
2. The export as the worker runs it: exports.export_build() of an embeddings
   export (eager mode: the build lock is a thread lock, no Redis), writing
   the ZIP into the scratch folder's storage. Memory: RssAnon (the process's
   own memory, not the page cache of files) sampled every 10 ms, its peak
   above what it was just before the export.
3. Baseline in the same run (the machine is shared, so the figures are
   ratios): the naive export, every row's vector read into a list, joined
   into one (N, 512) matrix, np.save'd into an in-memory buffer and written
   into a ZIP with ids.csv, measured the same way.
4. Check: the export's embeddings.npy equals the baseline's matrix, row for
   row in ids.csv order.

The scratch folder (under --scratch, /tmp by default) is deleted at the end.
"""

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.calibration import setup_django  # noqa: E402  (after the path fix above)


def _rss_anon_kb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    """The peak RssAnon (kB) while it runs, sampled every `every` seconds."""

    def __init__(self, every=0.01):
        super().__init__(daemon=True)
        self.every = every
        self.peak = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, _rss_anon_kb())
            self.done.wait(self.every)

    def __enter__(self):
        self.start_kb = _rss_anon_kb()
        self.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.join()
        self.peak = max(self.peak, _rss_anon_kb())


def populate(gallery, n, dim, seed):
    from django.utils import timezone

    from gallery import embedding, vectors
    from gallery.models import EmbeddingState, Image, ModerationState

    rng = np.random.default_rng(seed)
    version = embedding.version()
    now = timezone.now()
    step = 5000
    for start in range(0, n, step):
        block = rng.standard_normal((min(step, n - start), dim)).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        Image.objects.bulk_create(
            [
                Image(
                    gallery=gallery,
                    file=f"images/{gallery.pk}/{start + i}.jpg",
                    original_name=f"photo-{start + i}.jpg",
                    sha256=f"{start + i:064x}",
                    width=640,
                    height=480,
                    byte_size=100_000,
                    content_type="image/jpeg",
                    embedding_state=EmbeddingState.READY,
                    embedding=vectors.pack(vec),
                    embedding_version=version,
                    embedded_at=now,
                    moderation_state=ModerationState.APPROVED,
                )
                for i, vec in enumerate(block)
            ],
            batch_size=1000,
        )


def naive_export(gallery, out_path):
    """Everything in memory at once: the list of rows, the matrix, the .npy bytes."""
    from gallery import embedding, vectors
    from gallery.models import Image

    rows = list(
        Image.objects.searchable()
        .filter(gallery=gallery, embedding_version=embedding.version())
        .order_by("pk")
        .values_list("pk", "original_name", "sha256", "width", "height", "created_at", "embedding")
    )
    matrix = vectors.matrix([r[6] for r in rows], embedding.dim())
    npy = io.BytesIO()
    np.save(npy, matrix)
    ids = io.StringIO()
    writer = csv.writer(ids)
    writer.writerow(("id", "original_name", "sha256", "width", "height", "created_at"))
    for pk, name, sha, width, height, created, _blob in rows:
        writer.writerow((pk, name, sha, width, height, created.isoformat()))
    with zipfile.ZipFile(out_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("embeddings.npy"), npy.getvalue(), compress_type=zipfile.ZIP_STORED)
        zf.writestr("ids.csv", ids.getvalue())
    return matrix


def run_child(mode, scratch):
    """In a fresh process (so memory freed by the inserts or by the other mode hides nothing): one export, measured."""
    from django.core.files.storage import default_storage

    from gallery.models import Export, Gallery
    from gallery.services import exports

    gallery = Gallery.objects.get()
    if mode == "streamed":
        export = Export.objects.create(gallery=gallery, requested_by=gallery.owner, kind="embeddings", format="zip")
        with Sampler() as sampled:
            t = time.perf_counter()
            export = exports.export_build(export_id=export.pk)
            seconds = time.perf_counter() - t
        assert export.status == "ready", export.error
        with default_storage.open(export.file, "rb") as src, open(scratch / "streamed.zip", "wb") as out:
            shutil.copyfileobj(src, out)
    else:
        with Sampler() as sampled:
            t = time.perf_counter()
            naive_export(gallery, scratch / "naive.zip")
            seconds = time.perf_counter() - t
    size = (scratch / f"{mode}.zip").stat().st_size
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "peak_mb": round((sampled.peak - sampled.start_kb) / 1024, 1),
                "file_mb": round(size / 2**20, 1),
            }
        )
    )


def read_npy(path):
    with zipfile.ZipFile(path) as zf:
        ids = [int(r["id"]) for r in csv.DictReader(io.TextIOWrapper(zf.open("ids.csv"), encoding="utf-8"))]
        return np.load(io.BytesIO(zf.read("embeddings.npy"))), ids


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scratch", default=tempfile.gettempdir())
    parser.add_argument("--child", choices=["streamed", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    scratch = Path(args.dir) if args.child else Path(tempfile.mkdtemp(prefix="bench-exports-", dir=args.scratch))
    os.environ["IMAGESEARCH_BACKBONE"] = "tests.fake_backbone.FakeBackbone"  # no model: vectors are made here
    os.environ["IMAGESEARCH_EAGER"] = "1"
    os.environ["IMAGESEARCH_ENV_FILE"] = "/dev/null"
    os.environ["DATABASE_URL"] = f"sqlite:///{scratch / 'bench.sqlite3'}"
    setup_django(scratch)
    if args.child:
        run_child(args.child, scratch)
        return
    try:
        from django.contrib.auth.models import User
        from django.core.management import call_command

        from gallery import embedding
        from gallery.services import galleries

        call_command("migrate", verbosity=0)
        owner = User.objects.create_user("bench", password="bench-password-1")
        gallery = galleries.gallery_create(owner=owner, title="Bench")
        t = time.perf_counter()
        populate(gallery, args.images, embedding.dim(), args.seed)
        print(f"{args.images} images inserted in {time.perf_counter() - t:.1f} s", flush=True)
        result = {"images": args.images, "matrix_mb": round(args.images * embedding.dim() * 4 / 2**20, 1)}
        for mode in ("streamed", "naive"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--dir", str(scratch)],
                capture_output=True, text=True, check=True, env={**os.environ, "LOG_LEVEL": "WARNING"},
            )  # fmt: skip
            result[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        got, ids = read_npy(scratch / "streamed.zip")
        want, _ = read_npy(scratch / "naive.zip")
        assert got.shape == want.shape == (args.images, embedding.dim()) and np.array_equal(got, want)
        assert ids == sorted(ids) and len(ids) == args.images
        result["memory_ratio"] = round(result["naive"]["peak_mb"] / max(result["streamed"]["peak_mb"], 0.1), 1)
        result["time_ratio"] = round(result["streamed"]["seconds"] / result["naive"]["seconds"], 2)
        print(json.dumps(result, indent=1))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
