"""How a new index version is queried, measured on the gallery's own vectors at build time.

A fixed search_k fitted on synthetic clusters serves some galleries well and
others not: how hard a gallery is depends on how its vectors crowd together.
So every build samples its own items as queries, finds their true 10 nearest
by brute force, and walks a ladder of (pool, search_k) settings until the
index's answers hold at least IMAGESEARCH_TARGET_RECALL of them. Where a scan
of the stored vectors is as fast as the chosen setting (small galleries), the
version is searched exactly instead. The measured recall is kept with the
build, and the distances read along the way are what the similarity bands are
fitted to (gallery.search.bands).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gallery import vectors
from gallery.search import ann, cache
from gallery.search.engine import index_search
from gallery.search.store import Ref

K = 10  # recall@10 is what the calibration guarantees
SAMPLE_QUERIES = 400  # sampled items used as queries: the recall's standard error is ~0.002 at 0.99
PAIR_SAMPLE = 2_000  # items each sampled query is compared with for the distance distribution
TRUTH_CHUNK = 65_536  # rows scanned at a time for the exact answers: bounds memory at a million items
TIMING_QUERIES = 40  # queries timed per side for the exact-or-forest choice
EXACT_BUDGET_MS = 20.0
MAX_STEPS = 12  # search_k doubles per step: 1,024 .. 4M at most
# Distance slack for ties: an item as close as the true 10th counts as found.
TIE = 1e-6


@dataclass(frozen=True)
class Step:
    pool: int
    search_k: int
    recall: float
    worst: float
    ms: float  # median milliseconds per query


@dataclass(frozen=True)
class Calibration:
    exact: bool
    search_k: int
    pool: int
    recall: float | None  # mean recall@10 of the chosen setting on the sample; None: too few items to measure
    queries: int
    seconds: float
    exact_ms: float
    steps: tuple[Step, ...] = ()
    # For the bands: distances between sampled items and random other items
    # (sorted), and each sampled item's distance to its nearest other item.
    pair_distances: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    nearest_distances: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, dtype=np.float32))


def calibrate(
    ref: Ref,
    ids: npt.NDArray[np.int64],
    matrix: npt.NDArray[np.float32],
    *,
    target: float,
    seed: int = 0,
    allow_exact: bool = True,
) -> Calibration:
    """Measure the published version `ref` over `ids` (N,) / `matrix` (N, D) and choose how to query it.

    Every measurement goes through engine.index_search with explicit
    overrides, so what is measured is the code path queries take.
    `allow_exact=False` forces the forest (benchmarks and tests of the ladder).
    The gallery's versions are evicted from this process's cache afterwards:
    the builder keeps nothing open, and a query process opens and verifies a
    version itself.
    """
    try:
        return _calibrate(ref, ids, matrix, target=target, seed=seed, allow_exact=allow_exact)
    finally:
        cache.evict(ref.gallery_id)


def _calibrate(
    ref: Ref,
    ids: npt.NDArray[np.int64],
    matrix: npt.NDArray[np.float32],
    *,
    target: float,
    seed: int,
    allow_exact: bool,
) -> Calibration:
    started = time.monotonic()
    n_items = len(ids)
    rng = np.random.default_rng(seed)
    if n_items < 2:
        return Calibration(True, 0, 0, None, 0, time.monotonic() - started, 0.0)
    picks = np.sort(rng.choice(n_items, size=min(SAMPLE_QUERIES, n_items), replace=False))  # (S,)
    queries = np.asarray(matrix[picks], dtype=np.float32)  # (S, D)
    truth_dist, nearest = _exact_answers(matrix, queries, picks)  # (S, <=K), (S,)
    columns = rng.choice(n_items, size=min(PAIR_SAMPLE, n_items), replace=False)  # (C,)
    pairs = vectors.cosine_distances(np.asarray(matrix[columns], dtype=np.float32), queries)  # (S, C)
    pairs = np.sort(pairs[picks[:, None] != columns[None, :]].astype(np.float32))  # self-pairs dropped

    def measure(pool: int, search_k: int, exact: bool = False) -> Step:
        recalls, times = [], []
        for q, pos in enumerate(picks.tolist()):
            t0 = time.perf_counter()
            pks, dist = index_search(ref, queries[q], K + 1, search_k, pool=pool, exact=exact)
            times.append(time.perf_counter() - t0)
            dist = dist[pks != ids[pos]][:K]  # the query item itself is not an answer
            want = truth_dist[q]
            recalls.append(float(np.count_nonzero(dist <= want[-1] + TIE)) / len(want) if len(want) else 1.0)
        return Step(pool, search_k, float(np.mean(recalls)), float(np.min(recalls)), 1000 * float(np.median(times)))

    exact_step = measure(0, 0, exact=True)
    steps: list[Step] = []
    pool = ann.pool_for(K + 1, n_items)
    search_k = 8 * pool
    for _ in range(MAX_STEPS):
        step = measure(pool, search_k)
        steps.append(step)
        # Annoy never looks at more than every item of every tree.
        if step.recall >= target or pool >= n_items or search_k >= ref.n_trees * n_items:
            break
        search_k *= 2
        if search_k >= 32 * pool:  # the candidates found are right but ranked out of the pool: widen it too
            pool = min(n_items, 2 * pool)
    chosen = max(steps, key=lambda s: (s.recall >= target, -s.search_k if s.recall >= target else s.recall))
    # The ladder widens the pool with search_k, and at a large search_k the
    # pool ends wider than the target needs: on 1M clustered items (bench/
    # calibration.py) it stopped at pool 8,192 (recall 0.9942, 43 ms a query)
    # where pool 128 at the same search_k held 0.9940 in 17.5 ms. At one
    # search_k a narrower pool re-ranks a subset of the same candidates, so
    # recall can only fall as the pool narrows: bisect the ladder's narrower
    # pools for the narrowest that still reaches the target.
    narrower = sorted({s.pool for s in steps if s.pool < chosen.pool})
    if chosen.recall >= target:
        while narrower:
            mid = len(narrower) // 2
            step = measure(narrower[mid], chosen.search_k)
            steps.append(step)
            if step.recall >= target:
                chosen, narrower = step, narrower[:mid]
            else:
                narrower = narrower[mid + 1 :]
    if allow_exact:
        # Time both sides again, interleaved, on a few queries: the first pass
        # also paid for page faults and the recall bookkeeping.
        exact_ms, forest_ms = _race(ref, queries[:TIMING_QUERIES], chosen)
    else:
        exact_ms, forest_ms = exact_step.ms, chosen.ms
    # Exact where it is as fast; also where the forest falls short of the
    # target and a scan still answers within EXACT_BUDGET_MS.
    exact = allow_exact and (exact_ms <= forest_ms or (chosen.recall < target and exact_ms <= EXACT_BUDGET_MS))
    return Calibration(
        exact=exact,
        search_k=chosen.search_k,
        pool=chosen.pool,
        recall=exact_step.recall if exact else chosen.recall,
        queries=len(picks),
        seconds=time.monotonic() - started,
        exact_ms=exact_ms,
        steps=tuple(steps),
        pair_distances=pairs,
        nearest_distances=nearest,
    )


def _exact_answers(
    matrix: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], picks: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Return the true K nearest distances ((S, <=K), ascending) of each query, itself excluded, and the nearest."""
    best = np.full((len(queries), 0), np.inf, dtype=np.float32)  # (S, <=K)
    for start in range(0, len(matrix), TRUTH_CHUNK):
        chunk = np.asarray(matrix[start : start + TRUTH_CHUNK], dtype=np.float32)  # (C, D)
        dist = vectors.cosine_distances(chunk, queries).astype(np.float32)  # (S, C)
        own = (picks >= start) & (picks < start + len(chunk))
        dist[np.flatnonzero(own), picks[own] - start] = np.inf  # an item is not its own neighbour
        both = np.concatenate([best, dist], axis=1)
        keep = min(K, both.shape[1])
        best = np.partition(both, keep - 1, axis=1)[:, :keep] if both.shape[1] > keep else both
    best = np.sort(best, axis=1)
    finite = np.isfinite(best)
    rows = [best[i][finite[i]] for i in range(len(best))]
    width = min(len(r) for r in rows)
    truth = np.stack([r[:width] for r in rows]) if width else np.zeros((len(best), 0), dtype=np.float32)
    return truth, (truth[:, 0] if width else np.zeros(len(best), dtype=np.float32))


def _race(ref: Ref, queries: npt.NDArray[np.float32], chosen: Step) -> tuple[float, float]:
    """Median milliseconds per query of an exact scan and of the chosen forest setting, timed alternately."""
    exact_t, forest_t = [], []
    for q in queries:
        t0 = time.perf_counter()
        index_search(ref, q, K + 1, exact=True)
        t1 = time.perf_counter()
        index_search(ref, q, K + 1, chosen.search_k, pool=chosen.pool, exact=False)
        t2 = time.perf_counter()
        exact_t.append(t1 - t0)
        forest_t.append(t2 - t1)
    return 1000 * float(np.median(exact_t)), 1000 * float(np.median(forest_t))
