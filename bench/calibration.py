"""Calibrated search: what each index build chooses from its own vectors, measured on other queries.

    .venv/bin/python bench/calibration.py                            # 10k and 100k synthetic items
    .venv/bin/python bench/calibration.py --sizes 10000,100000,1000000
    .venv/bin/python bench/calibration.py --sizes 1000000 --pool-sweep 128,512,2048,8192
    .venv/bin/python bench/calibration.py --sizes '' --corel ../shared/data/corel1k

Synthetic (bench/search.py's clustered 512-d unit vectors, its generator and its
exact truth): for every size, store.build, then calibration.calibrate as
gallery_rebuild_index runs it (target IMAGESEARCH_TARGET_RECALL, the build's
seed), then three settings of the same version on queries the calibration did
not see, each asked for the 18 results search_vector asks the index for at k = 10:

- calibrated: the version as recorded (exact, or the chosen pool and search_k);
- fixed rule: the rule before calibration, ann.search_k_for(n_trees, n, count)
  with calibrated=(0, 0) and the default pool;
- exact: a scan of the stored vectors.

Two kinds of held-out query: "fresh", --queries new vectors from the same
clusters (an outside picture), and "items", --queries items of the index that
the calibration did not sample, each excluding itself (find similar). Recall@10
is against exact search (numpy, bench/search.exact_top_k); latency is per query,
median and p95, wall clock (--blas-threads BLAS threads for the whole run:
calibration and measurement alike). --pool-sweep measures other pools at the
calibrated search_k on --sweep-queries of each kind.

Corel (--corel DIR): the JPEGs are stored as images of a gallery through the
upload service, embedded by the product's pipeline with the configured weights
(IMAGESEARCH_VGG16_WEIGHTS, default here: none, seeded random), the index built
by services.gallery_rebuild_index, and served recall@10 measured through the
real search path (search_vector, as the pages) on --corel-sample images against
exact search: gallery.search.quality.index_recall, plus the per-query count of
short answers. The database is a fresh test database (SQLite in a temporary
folder, or test_<name> on the server of DATABASE_URL), destroyed at the end.
--corel-vectors FILE keeps the embedded vectors (by file name) for a later run,
which then skips the model.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# Not bench/ on the path (Python puts a script's directory first): bench/http.py
# would shadow the standard library's http package, which Django imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.search import Clusters, exact_top_k  # noqa: E402  (after the path fix above)

K = 10
SERVED_N = K + max(8, K // 4)  # what search_vector asks index_search for at k = 10, offset 0


def setup_django(var_dir):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagesearch.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("IMAGESEARCH_VGG16_WEIGHTS", "none")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["IMAGESEARCH_VAR_DIR"] = str(var_dir)
    os.environ["IMAGESEARCH_MEDIA_ROOT"] = str(var_dir / "media")
    os.environ["IMAGESEARCH_INDEX_DIR"] = str(var_dir / "index")
    import django

    django.setup()


# --- Synthetic ----------------------------------------------------------------------


def _sampled_positions(n_items, seed):
    """The positions calibration.calibrate samples as its queries (the same draw, same order of calls)."""
    from gallery.search import calibration

    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_items, size=min(calibration.SAMPLE_QUERIES, n_items), replace=False))


def _measure(ref, queries, truth, self_pks, max_queries):
    """Ask index_search for SERVED_N per query (dropping the query's own pk, if any); return recall@10 and ms."""
    from gallery.search import engine

    times, recalls = [], []
    for q, expected, own in zip(queries[:max_queries], truth, self_pks):
        t = time.perf_counter()
        pks, _dist = engine.index_search(ref, q, SERVED_N)
        times.append(time.perf_counter() - t)
        got = [pk for pk in pks.tolist() if pk != own][:K]
        recalls.append(len(set(got) & set(expected.tolist())) / K)
    ms = np.array(times) * 1e3
    r = np.array(recalls)
    return {
        "queries": len(r),
        "recall": float(r.mean()),
        "worst": float(r.min()),
        "short": int(np.count_nonzero(r < 1.0)),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
    }


def synthetic(n, args):
    from dataclasses import replace

    from django.conf import settings

    from gallery.search import ann, cache, calibration, store

    t = time.perf_counter()
    clusters = Clusters(n, seed=n)
    data = clusters.sample(n, seed=1)  # (N, 512), bench/search.py's data at this size
    ids = np.arange(1, n + 1, dtype=np.int64)  # (N,) pks: position + 1
    fresh = clusters.sample(args.queries, seed=2)  # (Q, 512) held out, same clusters
    fresh_truth = exact_top_k(data, fresh, K) + 1  # (Q, 10) pks
    seed = settings.IMAGESEARCH_RANDOM_SEED
    sampled = set(_sampled_positions(n, seed).tolist())
    rng = np.random.default_rng(7)
    others = np.array([p for p in rng.permutation(n)[: args.queries + len(sampled)] if p not in sampled])
    others = others[: args.queries]  # (Q,) positions the calibration did not sample
    item_truth = exact_top_k(data, data[others], K + 1) + 1  # (Q, 11) pks, the item itself among them
    item_truth = np.array([[pk for pk in row if pk != others[i] + 1][:K] for i, row in enumerate(item_truth)])
    data_s = time.perf_counter() - t
    print(f"\n== {n:,} items, {clusters.n_clusters:,} clusters (data + ground truth {data_s:.1f} s)")

    t = time.perf_counter()
    built = store.build(1, n, ids, data, seed=seed)
    build_s = time.perf_counter() - t
    base = store.Ref(1, n, built.checksum, built.n_trees, built.item_count)
    fit = calibration.calibrate(base, ids, data, target=settings.IMAGESEARCH_TARGET_RECALL, seed=seed)
    mode = "exact" if fit.exact else f"forest: pool {fit.pool}, search_k {fit.search_k}"
    print(
        f"  build {build_s:.1f} s, n_trees {built.n_trees}; calibration {fit.seconds:.1f} s: {mode}, "
        f"recall@10 {fit.recall:.4f} on its {fit.queries} sampled items (exact scan {fit.exact_ms:.2f} ms)"
    )
    for step in fit.steps:
        print(
            f"    ladder: pool {step.pool:6d} search_k {step.search_k:9,d}  recall {step.recall:.4f} "
            f"(worst {step.worst:.1f})  p50 {step.ms:.2f} ms"
        )
    settings_ = {
        "calibrated": replace(base, exact=fit.exact, search_k=fit.search_k, pool=fit.pool),
        "calibrated forest": replace(base, exact=False, search_k=fit.search_k, pool=fit.pool),
        "fixed rule": base,  # search_k 0, pool 0: ann.search_k_for(n_trees, n, count) and ann.POOL
        "exact": replace(base, exact=True),
    }
    if not fit.exact:
        del settings_["calibrated forest"]  # the same as "calibrated"
    fixed_k = ann.search_k_for(built.n_trees, SERVED_N, n)
    row = {
        "items": n,
        "n_trees": built.n_trees,
        "build_s": build_s,
        "calibration": {
            "exact": fit.exact,
            "pool": fit.pool,
            "search_k": fit.search_k,
            "recall": fit.recall,
            "queries": fit.queries,
            "seconds": fit.seconds,
            "exact_ms": fit.exact_ms,
            "steps": [s.__dict__ for s in fit.steps],
        },
        "fixed_rule": {"pool": ann.pool_for(SERVED_N, n), "search_k": fixed_k},
        "served_n": SERVED_N,
        "results": {},
    }
    for name, ref in settings_.items():
        bound = args.exact_queries if ref.exact else args.queries
        for kind, queries, truth, own in (
            ("fresh", fresh, fresh_truth, [0] * len(fresh)),
            ("items", data[others], item_truth, (others + 1).tolist()),
        ):
            r = _measure(ref, queries, truth, own, bound)
            row["results"][f"{name} / {kind}"] = r
            print(
                f"  {name:17s} {kind:5s}  recall@10 {r['recall']:.4f} (worst {r['worst']:.1f}, {r['short']:4d} short)  "
                f"p50 {r['p50_ms']:7.3f} ms  p95 {r['p95_ms']:7.3f} ms  ({r['queries']} queries)"
            )
    print(
        f"  fixed rule: pool {row['fixed_rule']['pool']}, search_k {fixed_k:,} for {SERVED_N} results; "
        f"calibrated asks pool {ann.pool_for(SERVED_N, n, fit.pool)}, "
        f"search_k {ann.search_k_for(built.n_trees, SERVED_N, n, (fit.search_k, fit.pool)):,}"
    )
    res = row["results"]
    for kind in ("fresh", "items"):
        c, f, e = res[f"calibrated / {kind}"], res[f"fixed rule / {kind}"], res[f"exact / {kind}"]
        missed = (
            f"{(1 - c['recall']) / (1 - f['recall']):.2f}" if f["recall"] < 1 else "n/a (the fixed rule missed none)"
        )
        print(
            f"  ratios ({kind}): calibrated p50 / fixed-rule p50 = {c['p50_ms'] / f['p50_ms']:.2f}x, "
            f"exact p50 / calibrated p50 = {e['p50_ms'] / c['p50_ms']:.2f}x; "
            f"missed neighbours calibrated / fixed rule = {missed}"
        )
    for pool in args.pool_sweep:
        ref = replace(base, exact=False, search_k=fit.search_k, pool=pool)
        for kind, queries, truth, own in (
            ("fresh", fresh, fresh_truth, [0] * len(fresh)),
            ("items", data[others], item_truth, (others + 1).tolist()),
        ):
            r = _measure(ref, queries, truth, own, args.sweep_queries)
            row["results"][f"pool {pool} / {kind}"] = r
            print(
                f"  sweep: pool {pool:5d} at search_k {fit.search_k:,} {kind:5s}  recall@10 {r['recall']:.4f} "
                f"(worst {r['worst']:.1f}, {r['short']:4d} short)  p50 {r['p50_ms']:7.3f} ms  p95 {r['p95_ms']:7.3f} ms  "
                f"({r['queries']} queries)"
            )
    cache.evict(1)
    store.remove_versions(1, keep=set())
    return row


# --- Corel ---------------------------------------------------------------------------


def corel(args, tmp):
    from django.contrib.auth import get_user_model
    from django.db import connection

    from gallery import embedding, jobs, services
    from gallery.models import EmbeddingState, Gallery, Image
    from gallery.search import engine, quality
    from gallery.vectors import pack

    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        user = get_user_model().objects.create_user("bench-cal", password="bench-cal-pw")
        gallery = services.gallery_create(owner=user, title="corel1k", visibility="public")
        files = sorted(Path(args.corel).rglob("*.jpg"))
        t = time.perf_counter()
        ids = []
        for f in files:
            result = services.image_create(
                gallery=gallery, uploader=user, data=f.read_bytes(), name=f.name, queue=False
            )
            assert result.status == "added", (f, result.message)
            ids.append(result.image.pk)
        print(f"\n== corel: {len(ids)} images stored in {time.perf_counter() - t:.1f} s")
        kept = Path(args.corel_vectors) if args.corel_vectors else None
        t = time.perf_counter()
        if kept and kept.exists():
            saved = np.load(kept)
            by_name = dict(zip(saved["names"].tolist(), saved["vectors"]))
            for image in Image.objects.filter(pk__in=ids):
                Image.objects.filter(pk=image.pk).update(
                    embedding=pack(by_name[image.original_name]),
                    embedding_state=EmbeddingState.READY,
                    embedding_version=embedding.version(),
                    embedded_at=image.created_at,
                )
            print(f"  vectors read from {kept} ({time.perf_counter() - t:.1f} s); embedding {embedding.version()}")
        else:
            step = jobs.task_size()
            for start in range(0, len(ids), step):
                services.images_embed(image_ids=ids[start : start + step])
            elapsed = time.perf_counter() - t
            print(f"  embedded in {elapsed:.0f} s ({len(ids) / elapsed:.1f} images/s); {embedding.version()}")
            if kept:
                rows = Image.objects.filter(pk__in=ids).values_list("original_name", "embedding")
                names, blobs = zip(*rows)
                np.savez(kept, names=np.array(names), vectors=np.stack([np.frombuffer(bytes(b), "<f4") for b in blobs]))
        ready = Image.objects.filter(gallery=gallery, embedding_state=EmbeddingState.READY).count()
        t = time.perf_counter()
        build = services.gallery_rebuild_index(gallery_id=gallery.pk)
        Gallery.objects.filter(pk=gallery.pk).update(index_dirty=False)
        gallery = Gallery.objects.select_related("owner").get(pk=gallery.pk)
        mode = "exact" if build.exact else f"forest: pool {build.pool}, search_k {build.search_k}"
        print(
            f"  {ready} ready; index v{build.version} built in {time.perf_counter() - t:.1f} s: {build.item_count} items, "
            f"{mode}; calibration recall@10 {build.recall} on {build.recall_queries} items ({build.calibration_seconds:.1f} s)"
        )
        t = time.perf_counter()
        r = quality.index_recall(gallery=gallery, sample=args.corel_sample)
        print(
            f"  index_recall(sample={args.corel_sample}): recall@10 {r['recall']:.4f}, worst {r['worst']:.2f}, "
            f"{r['queries']} queries ({time.perf_counter() - t:.1f} s)"
        )
        # The same queries again, one by one, to count the short ones (index_recall keeps only the mean and worst).
        rows = Image.objects.searchable().filter(gallery=gallery, embedding_version=embedding.version())
        pks = np.array(rows.order_by("pk").values_list("pk", flat=True), dtype=np.int64)
        drawn = np.random.default_rng(0).choice(pks, size=min(args.corel_sample, len(pks)), replace=False)
        found = dict(rows.filter(pk__in=drawn.tolist()).values_list("pk", "embedding"))
        chosen = [int(pk) for pk in drawn if int(pk) in found]
        queries = np.stack([np.frombuffer(bytes(found[pk]), "<f4") for pk in chosen])  # (S, 512)
        truth = quality.exact_search(gallery=gallery, vectors=queries, k=K, exclude_ids=chosen)
        recalls = []
        for pk, vec, exact in zip(chosen, queries, truth):
            served = engine.search_vector(user=gallery.owner, gallery=gallery, vector=vec, k=K, exclude_id=pk)
            recalls.append(len({m.image.pk for m in served} & set(exact)) / len(exact))
        recalls = np.array(recalls)
        short = int(np.count_nonzero(recalls < 1.0))
        print(f"  per query: mean {recalls.mean():.4f}, {short} of {len(recalls)} short, worst {recalls.min():.2f}")
        return {
            "images": len(ids),
            "ready": ready,
            "build": {
                "version": build.version,
                "items": build.item_count,
                "exact": build.exact,
                "pool": build.pool,
                "search_k": build.search_k,
                "recall": build.recall,
                "recall_queries": build.recall_queries,
                "calibration_seconds": build.calibration_seconds,
            },
            "served": {**r, "short": short},
        }
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="synthetic sizes, comma-separated ('' for none)")
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries of each kind")
    parser.add_argument("--exact-queries", type=int, default=300, help="bound for the exact scan's queries")
    parser.add_argument(
        "--pool-sweep", default="", help="also measure these pools at the calibrated search_k, e.g. 128,1024,8192"
    )
    parser.add_argument("--sweep-queries", type=int, default=300, help="held-out queries of each kind per pool")
    parser.add_argument("--blas-threads", type=int, default=1, help="BLAS threads (bench/search.py measures with 1)")
    parser.add_argument("--corel", help="a folder of JPEGs to embed into a gallery and measure served recall on")
    parser.add_argument("--corel-sample", type=int, default=1000)
    parser.add_argument("--corel-vectors", help="an .npz to keep the embedded vectors in, and read them from")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    args.pool_sweep = [int(p) for p in args.pool_sweep.split(",") if p]

    from threadpoolctl import threadpool_limits  # comes with scikit-learn

    threadpool_limits(args.blas_threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-cal-"))
    setup_django(tmp)
    from django.conf import settings

    print(
        f"cpus={os.cpu_count()} load(1/5/15 min) at start={os.getloadavg()} target={settings.IMAGESEARCH_TARGET_RECALL} "
        f"seed={settings.IMAGESEARCH_RANDOM_SEED} blas_threads={args.blas_threads}"
    )
    report = {"load_start": os.getloadavg(), "sizes": {}}
    for n in [int(s) for s in args.sizes.split(",") if s]:
        report["sizes"][n] = synthetic(n, args)
        print(f"  load after: {os.getloadavg()}")
    if args.corel:
        report["corel"] = corel(args, tmp)
        print(f"  load after: {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
