"""Embedding throughput, measured on real JPEGs in one run, as ratios against baselines.

    .venv/bin/python bench/embed.py [--limit 200] [--data ../shared/data/corel1k] [--rss 1000]

(1) ingest:   the product path end to end: services.images_embed on stored images
              (read from storage, decode + preprocess on a thread, batched VGG16, vectors
              written to a real database), in the task-sized chunks a worker receives.
(2) loop:     the textbook loop: keras load_img + preprocess_input + model.predict, once per image.
(3) model:    embedding.embed_batch alone on pre-decoded (N, 224, 224, 3) arrays.
(4) ceiling:  a large numpy float32 matrix product's GFLOP/s / 30.9 GFLOP per VGG16 forward.
--rss N:      a real `celery worker` (solo pool, embed queue, as `make worker`) while
              `import_images` loads N images; its peak resident memory (VmHWM) and rate.

The database is a fresh test database (SQLite in a temporary folder, or test_<name>
on the server named by DATABASE_URL), destroyed at the end. The model runs with
seeded random weights unless IMAGESEARCH_VGG16_WEIGHTS says otherwise: the cost of
a forward pass does not depend on the weights' values.
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Import from the project root, not from bench/: a script there must not shadow a stdlib module.
sys.path[0] = str(ROOT)
VGG16_GFLOP = 30.9  # multiply-adds x 2 of the 13 conv layers at 224x224 (the head is not run)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "corel1k"))
    p.add_argument("--limit", type=int, default=200, help="images for (1)-(3) (default 200)")
    p.add_argument("--loop-limit", type=int, default=None, help="images for the per-image loop (default: --limit)")
    p.add_argument("--batch-size", type=int, default=None, help="IMAGESEARCH_EMBED_BATCH_SIZE for this run")
    p.add_argument("--sweep", default="", help="also time (3) at these batch sizes, e.g. 4,8,16,32")
    p.add_argument("--threads", default="", help="INTRA,INTER TensorFlow threads instead of the product's choice")
    p.add_argument("--rss", type=int, default=0, help="also run the worker-memory import of this many images")
    p.add_argument("--skip", default="", help="comma list of phases to skip: ingest,loop,model")
    return p.parse_args()


def setup_django(args, tmp):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagesearch.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("IMAGESEARCH_VGG16_WEIGHTS", "none")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["IMAGESEARCH_VAR_DIR"] = str(tmp)
    os.environ["IMAGESEARCH_MEDIA_ROOT"] = str(tmp / "media")
    os.environ["IMAGESEARCH_INDEX_DIR"] = str(tmp / "index")
    if args.batch_size:
        os.environ["IMAGESEARCH_EMBED_BATCH_SIZE"] = str(args.batch_size)
    if args.threads:
        intra, inter = (int(v) for v in args.threads.split(","))
        import tensorflow as tf

        # Set before the product's own choice, which then finds the context initialised.
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    import django

    django.setup()
    from django.db import connection

    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    return connection, old_name


def ceiling():
    """Return the best GFLOP/s of a 4096^3 float32 matrix product (numpy's BLAS)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.random((4096, 4096), dtype=np.float32)
    b = rng.random((4096, 4096), dtype=np.float32)
    a @ b
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * 4096**3 / (time.perf_counter() - t) / 1e9)
    return best


def store(files, gallery, user):
    """Store the files as images through the upload service; return their ids."""
    from gallery import services

    ids = []
    for f in files:
        result = services.image_create(gallery=gallery, uploader=user, data=f.read_bytes(), name=f.name, queue=False)
        assert result.status == "added", (f, result.message)
        ids.append(result.image.pk)
    return ids


def warm_up(sizes):
    """Trace every batch shape the run will use, so (1) and (3) time steady state."""
    import numpy as np

    from gallery import embedding
    from gallery.embedding.backbones import vgg16

    for size in sizes:
        for shape in vgg16.batch_shapes(size):
            embedding.embed_batch([np.zeros((224, 224, 3), np.float32)] * shape)


def time_ingest(ids):
    from django.conf import settings

    from gallery import jobs, services
    from gallery.models import EmbeddingState, Image

    step = jobs.task_size()
    t = time.perf_counter()
    for start in range(0, len(ids), step):
        services.images_embed(image_ids=ids[start : start + step])
    elapsed = time.perf_counter() - t
    ready = Image.objects.filter(pk__in=ids, embedding_state=EmbeddingState.READY).count()
    assert ready == len(ids), f"only {ready} of {len(ids)} images ready"
    return len(ids) / elapsed, settings.IMAGESEARCH_EMBED_BATCH_SIZE


def time_model(files, batch_sizes):
    from django.test import override_settings

    from gallery import embedding
    from gallery.embedding import imaging

    arrays = [imaging.model_input(size=224, data=f.read_bytes()) for f in files]  # N x (224, 224, 3) float32
    rates = {}
    for size in batch_sizes:
        with override_settings(IMAGESEARCH_EMBED_BATCH_SIZE=size):
            warm_up([size])
            t = time.perf_counter()
            embedding.embed_batch(arrays)  # (N, 512)
            rates[size] = len(arrays) / (time.perf_counter() - t)
    return rates


def time_loop(files):
    """The textbook baseline: one image at a time through keras' own helpers and predict()."""
    import keras  # baseline only: the product reaches Keras through gallery.embeddings
    import numpy as np
    from django.conf import settings

    keras.utils.set_random_seed(settings.IMAGESEARCH_RANDOM_SEED)
    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(224, 224, 3), pooling="avg")
    model.predict(np.zeros((1, 224, 224, 3), np.float32), verbose=0)
    t = time.perf_counter()
    for f in files:
        x = keras.utils.img_to_array(keras.utils.load_img(f, target_size=(224, 224)))  # (224, 224, 3)
        x = keras.applications.vgg16.preprocess_input(x[np.newaxis])  # (1, 224, 224, 3) BGR, mean-subtracted
        feats = model.predict(x, verbose=0)  # (1, 512)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    return len(files) / (time.perf_counter() - t)


def rss_run(n, data, tmp):
    """Start an embed worker, import n images with the command, wait until all are ready.

    Return (peak RSS MiB, seconds from import start to the last vector, import seconds).
    """
    import redis
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from gallery.models import EmbeddingState, Image
    from tests import live

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    if broker.llen("embed"):
        raise SystemExit(f"the embed queue of {settings.CELERY_BROKER_URL} is not empty: use a broker db of your own")
    folder = tmp / "import"
    for f in sorted(Path(data).rglob("*.jpg"))[:n]:
        dest = folder / f.parent.name / f.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
    get_user_model().objects.create_user("bench-rss", password="bench-rss-pw")
    env = live.worker_env(tmp, IMAGESEARCH_VGG16_WEIGHTS=os.environ["IMAGESEARCH_VGG16_WEIGHTS"])
    env.update({k: os.environ[k] for k in ("IMAGESEARCH_EMBED_BATCH_SIZE",) if k in os.environ})
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
        "embed",
        "-n",
        "bench-embed@%h",
        "--loglevel",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
    ]
    log = open(tmp / "worker.log", "wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                return
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            samples.append((int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        t0 = time.perf_counter()
        call_command("import_images", str(folder), gallery="bench-rss", owner="bench-rss", no_progress=True)
        imported = time.perf_counter() - t0
        deadline = time.monotonic() + 3600
        while Image.objects.filter(embedding_state=EmbeddingState.READY).count() < n:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker stopped or timed out:\n{(tmp / 'worker.log').read_text()[-3000:]}")
            time.sleep(0.5)
        total = time.perf_counter() - t0
        time.sleep(0.5)
    finally:
        stop.set()
        sampler.join()
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
    peak = max(h for _, h in samples) / 1024
    return peak, total, imported


def main():
    args = parse_args()
    files = sorted(Path(args.data).rglob("*.jpg"))
    if not files:
        raise SystemExit(f"no JPEGs under {args.data}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    connection, old_name = setup_django(args, tmp)
    from django.conf import settings

    from gallery import embedding, services
    from gallery.models import Gallery

    skip = set(filter(None, args.skip.split(",")))
    subset = files[: args.limit]
    load = os.getloadavg()
    print(
        f"machine: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; python {platform.python_version()}; "
        f"database {connection.vendor}; weights {settings.IMAGESEARCH_VGG16_WEIGHTS}"
    )
    try:
        gflops = ceiling()
        ceil = gflops / VGG16_GFLOP
        print(f"(4) ceiling: numpy sgemm {gflops:.1f} GFLOP/s / {VGG16_GFLOP} GFLOP = {ceil:.2f} images/s")

        from django.contrib.auth import get_user_model

        owner = get_user_model().objects.create_user("bench", password="bench-pw")
        gallery = services.gallery_create(owner=owner, title="bench")
        t = time.perf_counter()
        ids = store(subset, gallery, owner)
        print(
            f"    upload (validate + thumbnail + store, not embedding): {len(ids) / (time.perf_counter() - t):.1f} images/s"
        )
        sizes = [settings.IMAGESEARCH_EMBED_BATCH_SIZE]
        warm_up(sizes)
        print(f"    embedding version {embedding.version()}, batch size {sizes[0]}")
        results = {}
        if "ingest" not in skip:
            results["ingest"], _ = time_ingest(ids)
            print(f"(1) ingest (decode + preprocess + embed + store): {results['ingest']:.2f} images/s over {len(ids)}")
        if "model" not in skip:
            sweep = sorted({*sizes, *(int(s) for s in args.sweep.split(",") if s)})
            rates = time_model(subset, sweep)
            results["model"] = rates[sizes[0]]
            for size, rate in rates.items():
                print(f"(3) model alone, batch {size}: {rate:.2f} images/s")
        if "loop" not in skip:
            loop_files = files[: args.loop_limit or args.limit]
            results["loop"] = time_loop(loop_files)
            print(f"(2) per-image model.predict loop: {results['loop']:.2f} images/s over {len(loop_files)}")
        print("ratios:")
        if "ingest" in results:
            print(f"    ingest / ceiling = {results['ingest'] / ceil:.2f}  (target >= 0.8)")
            if "loop" in results:
                print(f"    ingest / loop    = {results['ingest'] / results['loop']:.2f}  (target >= 1.5)")
            if "model" in results:
                print(f"    ingest / model   = {results['ingest'] / results['model']:.2f}")
        if "model" in results:
            print(f"    model / ceiling  = {results['model'] / ceil:.2f}")
        Gallery.objects.all().delete()
        if args.rss:
            peak, total, imported = rss_run(args.rss, args.data, tmp)
            print(
                f"--rss: {args.rss} images imported in {imported:.0f}s, all embedded {total:.0f}s after the "
                f"import started ({args.rss / total:.2f} images/s); worker peak RSS {peak:.0f} MiB"
            )
        load = os.getloadavg()
        print(f"load at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
