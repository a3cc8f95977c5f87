"""Search benchmark: the product's index against exact numpy brute force and
scikit-learn's ball tree, on synthetic clustered 512-d unit vectors, in one run.

    .venv/bin/python bench/search.py                       # 10k, 100k and 1M items
    .venv/bin/python bench/search.py --sizes 10000,100000  # a quicker run

For every size: build time, peak extra memory (resident set of the method's child
beyond the data it inherited: build structures, index files it maps), single-query latency
p50/p99, and recall@10 against exact search on held-out queries from the same
distribution. Wall-clock and CPU times are both printed: on a shared machine
the wall clock includes waiting for a core. "product" is gallery.search
(store, cache, engine) as search uses it: the query projected by the version's PCA to projection.INDEX_DIM dimensions,
a pool of Annoy candidates found there (ann.pool_for: 128 for the n = 42 that
search_vector asks at k = 10), re-ranked by exact cosine distance on the stored
512-d vectors, the best 42 returned; the build includes fitting the projection.
The database filter of visible rows is not included here (bench/http.py
measures the whole request). --sweep multiplies the product's search_k, the one
knob left to trade time for recall once the index is built.

Every method runs in a forked child with a time limit, so one slow phase cannot
stall the run: the ball tree's fit and its queries are bounded (at 1M x 512 a
ball tree degenerates towards a linear scan), and each method answers at most
--max-seconds of queries; the number actually measured is printed.
"""

import argparse
import json
import multiprocessing as mp
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
DIM = 512
K = 10
CANDIDATES = max(2 * K, K + 32)  # what search_vector asks the index for at k = 10


# --- Data ---------------------------------------------------------------------


class Clusters:
    """Gaussian clusters on the unit sphere: ~100 items a cluster, as a gallery of
    many small series of similar photos. spread = 1.0 puts a point's cosine to its
    centre near 0.7 and to a random other point of its cluster near 0.5."""

    def __init__(self, n_items, seed=0, per_cluster=100, spread=1.0):
        rng = np.random.default_rng(seed)
        self.n_clusters = max(2, n_items // per_cluster)
        self.centers = rng.standard_normal((self.n_clusters, DIM)).astype(np.float32)  # (C, 512)
        self.centers /= np.linalg.norm(self.centers, axis=1, keepdims=True)
        self.spread = spread

    def sample(self, n, seed):
        """Return (n, 512) float32 unit vectors, generated in chunks (bounded memory)."""
        rng = np.random.default_rng(seed)
        out = np.empty((n, DIM), dtype=np.float32)  # (n, 512)
        for start in range(0, n, 65536):
            m = min(65536, n - start)
            labels = rng.integers(0, self.n_clusters, m)  # (m,)
            noise = rng.standard_normal((m, DIM), dtype=np.float32) * (self.spread / np.sqrt(DIM))  # (m, 512)
            x = self.centers[labels] + noise
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            out[start : start + m] = x
        return out


def exact_top_k(data, queries, k):
    """Return (Q, k) int64 indices of the k nearest rows by cosine, scanning data in chunks."""
    best_idx = np.zeros((len(queries), 0), dtype=np.int64)
    best_sim = np.zeros((len(queries), 0), dtype=np.float32)
    for start in range(0, len(data), 131072):
        sim = queries @ data[start : start + 131072].T  # (Q, c)
        top = np.argpartition(-sim, min(k, sim.shape[1] - 1), axis=1)[:, :k]  # (Q, k)
        cand_sim = np.concatenate([best_sim, np.take_along_axis(sim, top, axis=1)], axis=1)
        cand_idx = np.concatenate([best_idx, top + start], axis=1)
        order = np.argsort(-cand_sim, axis=1)[:, :k]
        best_sim = np.take_along_axis(cand_sim, order, axis=1)
        best_idx = np.take_along_axis(cand_idx, order, axis=1)
    return best_idx


# --- Measuring in a bounded child ---------------------------------------------------


def _rss_kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def run_bounded(fn, timeout, *args):
    """Run fn(*args) -> dict in a forked child; return its dict, or {"error": ...}."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def target():
        try:
            try:
                from threadpoolctl import threadpool_limits  # comes with scikit-learn

                # One BLAS thread: a single query is a small product, and spinning
                # BLAS threads on a shared 2-core machine only add latency.
                threadpool_limits(1)
            except ImportError:
                pass
            base = _rss_kb("VmRSS")  # what the child inherited: data, queries, truth
            result = fn(*args)
            result["peak_extra_mb"] = (_rss_kb("VmHWM") - base) / 1024  # build and queries
        except Exception as exc:  # reported, not raised: the run goes on
            result = {"error": f"{type(exc).__name__}: {exc}"}
        child.send(result)

    proc = ctx.Process(target=target)
    proc.start()
    child.close()
    deadline = time.monotonic() + timeout
    result = None
    while time.monotonic() < deadline:
        if parent.poll(1.0):
            result = parent.recv()
            break
        if not proc.is_alive():
            break
    if proc.is_alive():
        proc.kill()
    proc.join()
    if result is None:
        result = {
            "error": f"not finished within {timeout:.0f} s (killed)"
            if proc.exitcode in (None, -9)
            else f"exit {proc.exitcode}"
        }
    return result


def _latencies(answer, queries, truth, max_queries, max_seconds):
    """Answer queries one at a time until either bound; return latency and recall figures."""
    times, cpu, recalls = [], [], []
    stop = time.monotonic() + max_seconds
    for q, expected in zip(queries[:max_queries], truth):
        c = time.process_time()
        t = time.perf_counter()
        got = answer(q)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        recalls.append(len(set(got[:K].tolist()) & set(expected.tolist())) / K)
        if time.monotonic() > stop:
            break
    ms = np.array(times) * 1e3
    return {
        "queries": len(times),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        # CPU time of the process per query: what a query costs, less disturbed by other load.
        "cpu_p50_ms": float(np.percentile(np.array(cpu) * 1e3, 50)),
        "recall": float(np.mean(recalls)),
    }


# --- Methods ---------------------------------------------------------------------


def product(data, queries, truth, args):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagesearch.settings")
    import django

    django.setup()
    from django.conf import settings

    from gallery.search import ann, engine, projection, store

    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        settings.IMAGESEARCH_INDEX_DIR = Path(tmp)
        ids = np.arange(1, len(data) + 1, dtype=np.int64)  # (N,) pks
        t, c = time.perf_counter(), time.process_time()
        built = store.build(1, 1, ids, data, seed=1234)
        build_s, build_cpu_s = time.perf_counter() - t, time.process_time() - c
        ref = store.Ref(1, 1, built.checksum, built.n_trees, built.item_count)
        t = time.perf_counter()
        engine.index_search(ref, queries[0], CANDIDATES)  # verify checksum, mmap
        load_s = time.perf_counter() - t
        result = _latencies(
            lambda q: engine.index_search(ref, q, CANDIDATES)[0] - 1, queries, truth, args.queries, args.max_seconds
        )
        base_k = ann.search_k_for(built.n_trees, CANDIDATES, len(data))
        result["sweep"] = {}
        for factor in args.sweep:
            sk = int(base_k * factor)
            result["sweep"][sk] = _latencies(
                lambda q: engine.index_search(ref, q, CANDIDATES, search_k=sk)[0] - 1,
                queries,
                truth,
                args.sweep_queries,
                args.max_seconds,
            )
        result.update(
            build_s=build_s,
            build_cpu_s=build_cpu_s,
            load_s=load_s,
            n_trees=built.n_trees,
            size_mb=built.size_bytes / 2**20,
            search_k=ann.search_k_for(built.n_trees, CANDIDATES, len(data)),
            on_disk=len(data) > ann.ON_DISK_BUILD_ITEMS,
            index_dim=projection.INDEX_DIM,
            pool=ann.pool_for(CANDIDATES, len(data)),
        )
    return result


def numpy_exact(data, queries, truth, args):
    def answer(q):
        sim = data @ q  # (N,)
        top = np.argpartition(-sim, K)[:K]
        return top[np.argsort(-sim[top])]

    result = _latencies(answer, queries, truth, args.exact_queries, args.max_seconds)
    result.update(build_s=0.0, build_cpu_s=0.0)
    return result


def ball_tree(data, queries, truth, args):
    from sklearn.neighbors import NearestNeighbors

    t, c = time.perf_counter(), time.process_time()
    # Unit vectors: Euclidean order is cosine order.
    nn = NearestNeighbors(n_neighbors=K, algorithm="ball_tree").fit(data)
    build_s, build_cpu_s = time.perf_counter() - t, time.process_time() - c
    result = _latencies(
        lambda q: nn.kneighbors(q[None, :], K, return_distance=False)[0],
        queries,
        truth,
        args.tree_queries,
        args.max_seconds,
    )
    result.update(build_s=build_s, build_cpu_s=build_cpu_s)
    return result


# --- Run ------------------------------------------------------------------------------


def load():
    return os.getloadavg()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries (product)")
    parser.add_argument("--exact-queries", type=int, default=300, help="bound for numpy brute force")
    parser.add_argument("--tree-queries", type=int, default=100, help="bound for the ball tree")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="query time bound per method and size")
    parser.add_argument("--build-timeout", type=float, default=600.0, help="kill a method's child after this")
    parser.add_argument("--tree-timeout", type=float, default=300.0, help="bound for the ball tree's fit")
    parser.add_argument("--skip-tree-above", type=int, default=10**9, help="no ball tree past this many items")
    parser.add_argument(
        "--sweep", default="", help="also measure the product at these multiples of its search_k, e.g. 0.5,2,4"
    )
    parser.add_argument("--sweep-queries", type=int, default=300)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    args.sweep = [float(x) for x in args.sweep.split(",") if x]
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("IMAGESEARCH_VAR_DIR", tempfile.mkdtemp(prefix="bench-var-"))

    print(f"cpus={os.cpu_count()} load(1/5/15 min) at start={load()}")
    report = {"load_start": load(), "sizes": {}}
    for n in [int(s) for s in args.sizes.split(",")]:
        t = time.perf_counter()
        clusters = Clusters(n, seed=n)
        data = clusters.sample(n, seed=1)  # (N, 512)
        queries = clusters.sample(args.queries, seed=2)  # (Q, 512) held out, same clusters
        truth = exact_top_k(data, queries, K)  # (Q, 10)
        print(
            f"\n== {n:,} items, {clusters.n_clusters:,} clusters (data + ground truth {time.perf_counter() - t:.1f} s)"
        )
        rows = {}
        for name, fn in (("product", product), ("numpy exact", numpy_exact), ("ball tree", ball_tree)):
            if name == "ball tree" and n > args.skip_tree_above:
                rows[name] = {"error": f"skipped above {args.skip_tree_above:,} items"}
            else:
                limit = args.tree_timeout if name == "ball tree" else args.build_timeout
                rows[name] = run_bounded(fn, limit + args.max_seconds + 30, data, queries, truth, args)
            r = rows[name]
            if "error" in r:
                print(f"  {name:12s} {r['error']}")
                continue
            print(
                f"  {name:12s} build {r['build_s']:8.2f} s (cpu {r['build_cpu_s']:7.1f} s)  peak +{r['peak_extra_mb']:6.0f} MB  "
                f"p50 {r['p50_ms']:8.3f} ms (cpu {r['cpu_p50_ms']:7.3f})  p99 {r['p99_ms']:8.3f} ms  "
                f"recall@10 {r['recall']:.4f}  ({r['queries']} queries)"
            )
        p, e, b = rows["product"], rows["numpy exact"], rows["ball tree"]
        if "error" not in p:
            for sk, r in p.get("sweep", {}).items():
                print(
                    f"  product at search_k={sk}: p50 {r['p50_ms']:.3f} ms (cpu {r['cpu_p50_ms']:.3f}) p99 {r['p99_ms']:.3f} ms recall@10 {r['recall']:.4f} ({r['queries']} queries)"
                )
            print(
                f"  product: index_dim={p['index_dim']} pool={p['pool']} n_trees={p['n_trees']} search_k={p['search_k']} on_disk_build={p['on_disk']} files {p['size_mb']:.0f} MB, first query (verify+mmap) {p['load_s']:.2f} s"
            )
            for other_name, o in (("numpy exact", e), ("ball tree", b)):
                if "error" not in o:
                    print(f"  ratio {other_name} p50 / product p50 = {o['p50_ms'] / p['p50_ms']:.1f}x")
            if "error" not in b and b["build_s"]:
                print(f"  ratio ball tree build / product build = {b['build_s'] / p['build_s']:.2f}x")
        rows["load_after"] = load()
        print(f"  load after: {rows['load_after']}")
        report["sizes"][n] = rows
        del data, queries, truth
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
