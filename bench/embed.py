"""Embedding throughput and reduced precision, measured in one run, as ratios against baselines.

    .venv/bin/python bench/embed.py [--limit 128] [--data generated|FOLDER] [--precisions fp32,bf16,int8]
                                    [--rounds 2] [--loop-limit 32] [--rss 1000]

For each precision (IMAGESEARCH_PRECISION; the model is rebuilt and traced
outside the timed part), alternating the order round by round, medians reported:

(1) ingest:   the product path end to end: services.images_embed on stored images
              (read from storage, decode ahead on a thread, batched embedding, vectors
              written to a real database), in the task-sized chunks a worker receives.
(3) model:    embedding.embed_batch alone on pre-decoded (N, S, S, 3) arrays.
Once:
(2) loop:     the textbook loop: keras load_img + preprocess_input + model.predict, once per image (fp32).
(4) ceiling:  the GFLOP/s of a large TensorFlow matrix product in bfloat16 and in float32
              (and numpy's float32 BLAS), divided by the model's GFLOP per image, counted
              from its convolution and dense layers.
(5) fidelity: the vectors ingest stored at each precision against fp32's: the share of
              each image's 10 nearest neighbours (cosine) that are the same, and the
              cosine between an image's two vectors.
--rss N:      a real `celery worker` (solo pool, embed queue, as `make worker`) while
              `import_images` loads N images; its peak resident memory (VmHWM) and rate.

--data generated (the default) draws the pictures with tests/imagegen (scenes of shapes
on gradients, 640x480 JPEGs); a folder uses its JPEGs. The database is a fresh test
database (SQLite in a temporary folder, or test_<name> on the server named by
DATABASE_URL), destroyed at the end. The model runs with seeded random weights unless
IMAGESEARCH_VGG16_WEIGHTS says otherwise: the cost of a forward pass does not depend on
the weights' values.
"""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Import from the project root, not from bench/: a script there must not shadow a stdlib module.
sys.path[0] = str(ROOT)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="generated", help="'generated' (default) or a folder of JPEGs")
    p.add_argument("--limit", type=int, default=128, help="images for (1), (3) and (5) (default 128)")
    p.add_argument("--loop-limit", type=int, default=32, help="images for the per-image loop (default 32)")
    p.add_argument("--precisions", default="fp32,bf16,int8", help="IMAGESEARCH_PRECISION values to compare")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds per precision (default 2)")
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


def generate(folder, n):
    """Write n generated 640x480 JPEGs (tests/imagegen scenes, 8 'classes' of seeds) under folder."""
    from tests import imagegen

    for i in range(n):
        dest = folder / f"class{i % 8}" / f"scene{i:05d}.jpg"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(imagegen.encode(imagegen.scene(i, size=(640, 480)), quality=90))
    return folder


def matmul_gflops(dtype, n=4096, repeats=5):
    """Return the best GFLOP/s of an n x n x n TensorFlow matrix product in `dtype` (oneDNN, all cores)."""
    import tensorflow as tf

    a = tf.cast(tf.random.stateless_uniform((n, n), seed=(1, 2)), dtype)
    b = tf.cast(tf.random.stateless_uniform((n, n), seed=(3, 4)), dtype)
    matmul = tf.function(lambda x, y: tf.linalg.matmul(x, y))
    matmul(a, b).numpy()
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        matmul(a, b).numpy()
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def numpy_gflops(n=4096, repeats=5):
    """Return the best GFLOP/s of an n x n x n float32 numpy matrix product (numpy's BLAS)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def model_gflop(backbone):
    """Return the GFLOP (2 x multiply-adds) of one forward pass: convolutions and dense layers, from their shapes."""
    import keras

    model = keras.applications.__dict__[backbone.application](
        include_top=False,
        weights=None,
        input_shape=(backbone.input_size, backbone.input_size, 3),
        pooling="avg",
        **backbone.application_kwargs(),
    )
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            flops += 2 * h * w * c * kh * kw
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1] // layer.groups
            flops += 2 * h * w * c_out * kh * kw * c_in
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
    return flops / 1e9


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
    """Build the model and trace every batch shape the run will use, so (1) and (3) time steady state."""
    import numpy as np

    from gallery import embedding
    from gallery.embedding.backbones import keras_app

    side = embedding.input_size()
    for size in sizes:
        for shape in keras_app.batch_shapes(size):
            embedding.embed_batch([np.zeros((side, side, 3), np.float32)] * shape)


def repend(ids):
    """Put the images back to pending, vectors cleared, as if just uploaded."""
    from gallery.models import EmbeddingState, Image

    Image.objects.filter(pk__in=ids).update(
        embedding_state=EmbeddingState.PENDING, embedding=None, embedding_version="", claim_token=None
    )


def time_ingest(ids):
    """Return (images/s, (N, D) stored vectors in id order) of embedding `ids` through the service."""
    from gallery import embedding, jobs, services, vectors
    from gallery.models import EmbeddingState, Image

    repend(ids)
    step = jobs.task_size()
    t = time.perf_counter()
    for start in range(0, len(ids), step):
        services.images_embed(image_ids=ids[start : start + step])
    elapsed = time.perf_counter() - t
    rows = list(Image.objects.filter(pk__in=ids, embedding_state=EmbeddingState.READY).order_by("pk"))
    assert len(rows) == len(ids), f"only {len(rows)} of {len(ids)} images ready"
    assert {r.embedding_version for r in rows} == {embedding.version()}
    return len(ids) / elapsed, vectors.matrix([r.embedding for r in rows], embedding.dim())


def time_model(arrays, batch_sizes):
    from django.test import override_settings

    from gallery import embedding

    rates = {}
    for size in batch_sizes:
        with override_settings(IMAGESEARCH_EMBED_BATCH_SIZE=size):
            warm_up([size])
            t = time.perf_counter()
            embedding.embed_batch(arrays)  # (N, D)
            rates[size] = len(arrays) / (time.perf_counter() - t)
    return rates


def time_loop(files, backbone):
    """The textbook baseline: one image at a time through keras' own helpers and predict() (fp32)."""
    import keras  # baseline only: the product reaches Keras through gallery.embedding
    import numpy as np
    from django.conf import settings

    keras.utils.set_random_seed(settings.IMAGESEARCH_RANDOM_SEED)
    side = backbone.input_size
    model = keras.applications.__dict__[backbone.application](
        include_top=False, weights=None, input_shape=(side, side, 3), pooling="avg", **backbone.application_kwargs()
    )
    model.predict(np.zeros((1, side, side, 3), np.float32), verbose=0)
    t = time.perf_counter()
    for f in files:
        x = keras.utils.img_to_array(keras.utils.load_img(f, target_size=(side, side)))  # (S, S, 3)
        feats = model.predict(backbone.preprocess(x[np.newaxis]), verbose=0)  # (1, D)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    return len(files) / (time.perf_counter() - t)


def neighbours(vectors, k):
    import numpy as np

    sims = vectors @ vectors.T  # (N, N)
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1)[:, :k]  # (N, k)


def fidelity(reference, other, k=10):
    """Return (nn@k overlap, nn@k overlap of centred vectors, median and worst cosine) of `other` against `reference`."""
    import numpy as np

    def overlap(a, b):
        na, nb = neighbours(a, k), neighbours(b, k)
        return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(na, nb, strict=True)]))

    def centred(v):
        c = v - v.mean(axis=0)
        return c / np.linalg.norm(c, axis=1, keepdims=True)

    cos = (reference * other).sum(axis=1)
    return (
        overlap(reference, other),
        overlap(centred(reference), centred(other)),
        float(np.median(cos)),
        float(cos.min()),
    )


def spread(vectors, k=10):
    """Return (median 1 - cosine between two images, median cosine gap between an image's k-th and (k+1)-th neighbour)."""
    import numpy as np

    sims = vectors @ vectors.T  # (N, N)
    off = sims[~np.eye(len(vectors), dtype=bool)]
    np.fill_diagonal(sims, -np.inf)
    ranked = -np.sort(-sims, axis=1)  # (N, N), best first
    return float(np.median(1 - off)), float(np.median(ranked[:, k - 1] - ranked[:, k]))


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
    env.update({k: os.environ[k] for k in ("IMAGESEARCH_EMBED_BATCH_SIZE", "IMAGESEARCH_PRECISION") if k in os.environ})
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
    tmp = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    if args.data == "generated":
        data = generate(tmp / "generated", max(args.limit, args.loop_limit, args.rss))
    else:
        data = Path(args.data)
    files = sorted(data.rglob("*.jpg"))
    if not files:
        raise SystemExit(f"no JPEGs under {data}")
    connection, old_name = setup_django(args, tmp)
    from django.conf import settings
    from django.test import override_settings

    from gallery import embedding, services
    from gallery.embedding import backbones, imaging
    from gallery.embedding.backbones import precision
    from gallery.models import Gallery

    skip = set(filter(None, args.skip.split(",")))
    modes = [m.strip() for m in args.precisions.split(",") if m.strip()]
    subset = files[: args.limit]
    load = os.getloadavg()
    flags = sorted(precision.cpu_flags() & {"avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"})
    print(
        f"machine: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"flags {' '.join(flags) or '-'}, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"python {platform.python_version()}; database {connection.vendor}; "
        f"backbone {settings.IMAGESEARCH_BACKBONE}, weights {settings.IMAGESEARCH_VGG16_WEIGHTS}; "
        f"auto resolves to {precision.resolve('auto')}; data {args.data} ({len(subset)} images)"
    )
    try:
        backbone = backbones.active()
        gflop = model_gflop(backbone)
        sgemm = numpy_gflops()
        print(
            f"    {gflop:.2f} GFLOP per image; numpy float32 sgemm {sgemm:.1f} GFLOP/s = {sgemm / gflop:.2f} images/s"
        )
        # The matmul ceilings are measured again in every round, beside the ingests they bound.
        ceilings = {"bf16": [], "fp32": []}
        same_round = {m: [] for m in modes}  # ingest / ceiling of the same round

        from django.contrib.auth import get_user_model

        owner = get_user_model().objects.create_user("bench", password="bench-pw")
        gallery = services.gallery_create(owner=owner, title="bench")
        t = time.perf_counter()
        ids = store(subset, gallery, owner)
        print(
            f"    upload (validate + thumbnail + store, not embedding): {len(ids) / (time.perf_counter() - t):.1f} images/s"
        )
        size = settings.IMAGESEARCH_EMBED_BATCH_SIZE
        side = embedding.input_size()
        arrays = [imaging.model_input(size=side, data=f.read_bytes()) for f in subset]  # N x (S, S, 3) float32
        sweep = sorted({size, *(int(s) for s in args.sweep.split(",") if s)})
        ingest = {m: [] for m in modes}
        model = {m: {b: [] for b in sweep} for m in modes}
        stored = {}
        versions = {}
        for r in range(args.rounds):
            order = modes[r % len(modes) :] + modes[: r % len(modes)]  # rotate: no mode always runs first
            ceiling = {"bf16": matmul_gflops("bfloat16") / gflop, "fp32": matmul_gflops("float32") / gflop}
            for name, rate in ceiling.items():
                ceilings[name].append(rate)
            print(
                f"round {r + 1} (4) ceilings: bf16 matmul {ceiling['bf16']:.2f}, fp32 matmul {ceiling['fp32']:.2f} "
                f"images/s (load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
            for mode in order:
                with override_settings(IMAGESEARCH_PRECISION=mode):  # the backbone is rebuilt at this precision
                    t = time.perf_counter()
                    warm_up([size])
                    built = time.perf_counter() - t
                    versions[mode] = f"{embedding.version()} ({backbones.active().precision})"
                    line = f"round {r + 1} {mode}: build + trace {built:.1f}s"
                    if "ingest" not in skip:
                        rate, vecs = time_ingest(ids)
                        ingest[mode].append(rate)
                        stored.setdefault(mode, vecs)
                        same_round[mode].append(rate / ceiling["bf16" if mode == "bf16" else "fp32"])
                        line += f", (1) ingest {rate:.2f} images/s"
                    if "model" not in skip:
                        for b, rate in time_model(arrays, sweep).items():
                            model[mode][b].append(rate)
                            line += f", (3) model batch {b} {rate:.2f}"
                    print(line, flush=True)
                    if "ingest" in skip:
                        stored.setdefault(mode, embedding.embed_batch(arrays))
        for mode in modes:
            print(f"    {mode}: version {versions[mode]}")
        loop = None
        if "loop" not in skip:
            loop_files = files[: args.loop_limit]
            loop = time_loop(loop_files, backbone)
            print(f"(2) per-image model.predict loop (fp32): {loop:.2f} images/s over {len(loop_files)}")

        med_ingest = {m: statistics.median(v) for m, v in ingest.items() if v}
        med_model = {m: statistics.median(v[size]) for m, v in model.items() if v[size]}
        print(f"medians over {args.rounds} round(s), batch {size}:")
        for mode in modes:
            parts = []
            if mode in med_ingest:
                parts.append(f"(1) ingest {med_ingest[mode]:.2f}")
            if mode in med_model:
                parts.append(f"(3) model {med_model[mode]:.2f}")
            print(f"    {mode}: {', '.join(parts)} images/s")
        bf16_ceiling = statistics.median(ceilings["bf16"])
        fp32_ceiling = statistics.median(ceilings["fp32"])
        print(f"    (4) ceilings: bf16 matmul {bf16_ceiling:.2f}, fp32 matmul {fp32_ceiling:.2f} images/s")
        print("ratios:")
        for mode in ("bf16", "fp32"):
            if same_round.get(mode):
                target = "  (target >= 0.8)" if mode == "bf16" else ""
                print(
                    f"    ingest {mode} / {mode} ceiling of the same round, median = "
                    f"{statistics.median(same_round[mode]):.2f}{target}"
                )
        for name, med in (("ingest", med_ingest), ("model", med_model)):
            if "bf16" in med:
                print(f"    {name} bf16 / bf16 ceiling (medians) = {med['bf16'] / bf16_ceiling:.2f}")
            if "fp32" in med:
                print(f"    {name} fp32 / fp32 ceiling (medians) = {med['fp32'] / fp32_ceiling:.2f}")
                for mode in ("bf16", "int8"):
                    if mode in med:
                        print(f"    {name} {mode} / fp32 = {med[mode] / med['fp32']:.2f}")
        if loop and med_ingest:
            for mode, rate in med_ingest.items():
                print(f"    ingest {mode} / per-image loop = {rate / loop:.2f}")
        if med_ingest and med_model:
            for mode in modes:
                if mode in med_ingest and mode in med_model:
                    print(f"    ingest / model alone, {mode} = {med_ingest[mode] / med_model[mode]:.2f}")
        print(f"    bf16 / fp32 matmul ceiling = {bf16_ceiling / fp32_ceiling:.2f}")
        if "fp32" in stored:
            print(f"(5) fidelity against fp32 on {len(subset)} images (nn@10 target >= 0.99 for bf16):")
            apart, gap = spread(stored["fp32"])
            print(
                f"    fp32 vectors: median 1 - cosine between two images {apart:.2e}; median cosine gap between "
                f"an image's 10th and 11th neighbour {gap:.2e}"
            )
            for mode in modes:
                if mode != "fp32" and mode in stored:
                    nn, nn_centred, cos_median, cos_min = fidelity(stored["fp32"], stored[mode])
                    print(
                        f"    {mode}: nn@10 {nn:.4f} (centred vectors {nn_centred:.4f}); "
                        f"cosine to the fp32 vector median {cos_median:.6f} (1 - cosine {1 - cos_median:.1e}), worst {cos_min:.6f}"
                    )
        Gallery.objects.all().delete()
        if args.rss:
            peak, total, imported = rss_run(args.rss, data, tmp)
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
