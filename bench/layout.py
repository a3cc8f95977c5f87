"""Map layout: how long gallery.analysis.layout takes on a synthetic gallery, and how well it keeps neighbours.

    .venv/bin/python bench/layout.py                       # 100k x 512: PCA (target <= 60 s), t-SNE on a 2k sample
    .venv/bin/python bench/layout.py --sizes 10000 --tsne-sample 0

Per size N, in one process:

1. Data: bench/search.py's clustered 512-d unit vectors (Gaussian clusters of
   about 100 items).
2. Baselines, timed in the same run (the machine is shared, so speed is a
   ratio): `fit_projection` (the PCA fit every index build already does, on
   its PCA_SAMPLE rows), and one pass over the vectors (an (N, 512) x (512, 2)
   product: the least any linear layout costs).
3. The layouts, each timed end to end, with the ratio to the 60 s target:
   - "pca, fitted here": layout(vectors, "pca") without a projection, as for
     a version whose projection is not at hand (fit + project);
   - "pca, the build's projection": what the build_map task runs (the
     version's own projection is loaded with its index files);
   - "pca, on the projected vectors": the same on the INDEX_DIM (128) vectors
     the index searches in, for an index that keeps only projected vectors;
   - "tsne" (scikit-learn) with NONLINEAR_SAMPLE = --tsne-sample: fitted on
     that sample in the projected space, every other item placed by its
     PLACE_NEIGHBOURS nearest sampled items; "umap" the same when umap-learn
     is installed (skipped otherwise).
   - writing the coordinates file (layout.encode + write to a temporary file).
4. Quality: neighbour overlap@10: for --quality-sample items, the share of
   their 10 exact nearest neighbours (cosine, all N) that are among their 10
   nearest on the map. Random placement scores about 10 / N.

No database is used.
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

from bench.calibration import setup_django  # noqa: E402  (after the path fix above)
from bench.search import Clusters, exact_top_k  # noqa: E402

TARGET_SECONDS = 60.0


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def map_top_k(xy, rows, k):
    """(Q, k) indices of the k nearest items on the map to each of `rows` (itself left out)."""
    out = np.empty((len(rows), k), dtype=np.int64)
    for i, r in enumerate(rows):
        d = ((xy - xy[r]) ** 2).sum(axis=1)
        d[r] = np.inf
        out[i] = np.argpartition(d, k)[:k]
    return out


def overlap(true_nn, xy, rows, k=10):
    got = map_top_k(xy, rows, k)
    return float(np.mean([len(set(t) & set(g)) / k for t, g in zip(true_nn, got, strict=True)]))


def run(n, args):
    from gallery.analysis import layout
    from gallery.search import projection

    data = Clusters(n, seed=args.seed).sample(n, seed=args.seed + 1)  # (N, 512)
    rows = np.random.default_rng(7).choice(n, min(args.quality_sample, n), replace=False)
    # The exact 11 nearest include the item itself; drop it.
    true_nn = [[j for j in row if j != r][:10] for r, row in zip(rows, exact_top_k(data, data[rows], 11), strict=True)]
    report = {"n": n, "dim": int(data.shape[1]), "baselines": {}, "layouts": {}}
    pca, t_fit = timed(projection.fit_projection, data, args.seed)
    _, t_pass = timed(lambda: data @ pca[1:3].T)
    report["baselines"] = {"fit_projection_s": round(t_fit, 3), "one_pass_s": round(t_pass, 3)}
    print(f"N={n}: baselines: fit_projection {t_fit:.2f} s, one (N, 512) x (512, 2) pass {t_pass:.3f} s", flush=True)
    projected = layout._project_chunked(pca, data)  # (N, 128): the space the index searches in
    cases = [
        ("pca, fitted here", lambda: layout.layout(data, "pca", seed=args.seed)),
        ("pca, the build's projection", lambda: layout.layout(data, "pca", seed=args.seed, pca=pca)),
        ("pca, on the projected vectors", lambda: layout.layout(projected, "pca", seed=args.seed)),
    ]
    if args.tsne_sample:
        layout.NONLINEAR_SAMPLE = args.tsne_sample
        for method in ("tsne", "umap"):
            reason = layout.unavailable_reason(method)
            if reason:
                print(f"  {method}: skipped ({reason})", flush=True)
                report["layouts"][method] = {"skipped": reason}
                continue
            cases.append(
                (
                    f"{method}, {args.tsne_sample} fitted",
                    lambda m=method: layout.layout(data, m, seed=args.seed, pca=pca),
                )
            )
    for name, fn in cases:
        xy, seconds = timed(fn)
        quality = overlap(true_nn, xy, rows)
        report["layouts"][name] = {
            "seconds": round(seconds, 3),
            "target_ratio": round(seconds / TARGET_SECONDS, 4),
            "vs_fit_projection": round(seconds / t_fit, 2),
            "overlap_at_10": round(quality, 3),
        }
        print(
            f"  {name:34s} {seconds:8.2f} s  = {seconds / TARGET_SECONDS:.4f} x the 60 s target, "
            f"{seconds / t_fit:6.2f} x fit_projection; neighbour overlap@10 {quality:.3f}",
            flush=True,
        )
    xy = layout.layout(data, "pca", seed=args.seed, pca=pca)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        path = os.path.join(tmp, "v000001.map.bin")
        with open(path, "wb") as fh:
            fh.write(layout.encode(np.arange(n, dtype=np.int64), xy))
        t_write = time.perf_counter() - started
        size = os.path.getsize(path)
    report["file"] = {"seconds": round(t_write, 3), "bytes": size}
    print(f"  coordinates file: {size / 1e6:.1f} MB written in {t_write:.3f} s", flush=True)
    print(f"  random placement overlap@10 ~ {10 / n:.5f}", flush=True)
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000", help="comma-separated gallery sizes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tsne-sample", type=int, default=2000, help="items t-SNE/UMAP are fitted on (0: skip them)")
    parser.add_argument("--quality-sample", type=int, default=300, help="items whose neighbours are compared")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as var:
        setup_django(Path(var))
        reports = [run(int(n), args) for n in args.sizes.split(",")]
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
