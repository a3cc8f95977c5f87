"""The one module that imports Annoy: the forest over projected vectors, and its calibration.

Search is "compressed ANN + exact re-rank": Annoy finds a pool of candidates in
the projected space (gallery.search.projection), and the pool is ranked by exact
cosine distance on the stored full vectors (gallery.search.engine), so the
distances returned are exact and only membership of the pool is approximate.
The figures behind each constant are in docs/benchmarks.md ("Search").
"""

from collections.abc import Callable
from typing import Final, TypeAlias

import numpy as np
import numpy.typing as npt
from annoy import AnnoyIndex

from gallery.search.projection import INDEX_DIM

# What a forest is, for modules that must not import Annoy themselves.
Forest: TypeAlias = AnnoyIndex

METRIC: Final = "euclidean"  # in the projected space: unit vectors, so the same order as cosine
# Candidates ranked exactly per query: at least POOL, and twice the results
# asked for. 128 covers a cluster of ~100 near-duplicates, whose order the
# projection blurs.
POOL = 128
# Past this many items the forest is built straight into its file (Annoy's
# on_disk_build) instead of in RAM, so a rebuild's memory stays bounded.
ON_DISK_BUILD_ITEMS = 200_000
CHUNK = 8192  # rows projected and added at a time: bounds the Python floats alive at once


def n_trees_for(count: int) -> int:
    """Return the number of trees for `count` items: more trees, better recall, slower build.

    32 trees find every true neighbour below 50k items; 64 lift recall at 1M
    (0.92 against 0.87 at equal search_k) and 96 gain nothing over 64.
    """
    if count < 50_000:
        return 32
    return 64


def pool_for(n: int, count: int, base: int = 0) -> int:
    """Return how many candidates Annoy is asked for when a query wants `n` results.

    `base` is a build's calibrated pool for 10 results (0: POOL).
    """
    return min(count, max(base or POOL, 2 * n))


def search_k_for(n_trees: int, n: int, count: int, calibrated: tuple[int, int] = (0, 0)) -> int:
    """Return Annoy's search_k (roughly, how many item distances one query computes) for `n` results.

    `calibrated` is a build's (search_k, pool) measured on its own vectors
    (gallery.search.calibration): a wider pool, for more results, gets a
    search_k wider in proportion. (0, 0), a version built before calibration,
    falls back to the rule fitted on bench/search.py's clustered data for
    recall@10 >= 0.99 with the trees of n_trees_for() and a pool of 128:
    1,600 * (count / 100k) ** 1.9, never less than eight candidates per pool
    slot. `n_trees` is part of that rule: a different forest needs measuring again.
    """
    search_k, base = calibrated
    pool = pool_for(n, count, base)
    if search_k:
        return max(search_k, search_k * pool // max(1, base or POOL))
    return max(8 * pool, int(1_600 * (count / 100_000) ** 1.9))


def build_forest(
    path: str,
    vectors: npt.NDArray[np.float32],
    project: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]],
    n_trees: int,
    seed: int,
) -> None:
    """Build the forest over `project(vectors)` and write it to `path` (str).

    `vectors` is (N, D) float32; `project` maps a (B, D) chunk to (B, INDEX_DIM).
    Each build thread seeds its own generator from `seed`, so the trees (and
    every query's answer) are reproducible; only the node numbering in the
    file, hence its checksum, depends on thread timing.
    """
    forest = AnnoyIndex(INDEX_DIM, METRIC)
    forest.set_seed(seed)
    on_disk = len(vectors) > ON_DISK_BUILD_ITEMS
    if on_disk:
        forest.on_disk_build(path)
    for start in range(0, len(vectors), CHUNK):
        projected = project(vectors[start : start + CHUNK])  # (B, d)
        # Lists: Annoy copies them faster than numpy rows.
        for pos, vec in enumerate(projected.tolist(), start):
            forest.add_item(pos, vec)
    forest.build(n_trees, n_jobs=-1)
    if not on_disk:
        forest.save(path)
    forest.unload()


def load_forest(path: str) -> Forest:
    """Memory-map a forest file (pages are shared between processes). The caller has verified it."""
    forest = AnnoyIndex(INDEX_DIM, METRIC)
    forest.load(path)
    return forest


def query(forest: Forest, projected: npt.NDArray[np.float32], pool: int, search_k: int) -> list[int]:
    """Return the positions of the `pool` approximate nearest items to `projected` ((INDEX_DIM,))."""
    return forest.get_nns_by_vector(projected.tolist(), pool, search_k=search_k)


def query_item(forest: Forest, position: int, n: int, search_k: int) -> list[int]:
    """Return the positions of the `n` approximate nearest items to item `position` (itself among them, usually first)."""
    return forest.get_nns_by_item(position, n, search_k=search_k)


def item_count(forest: Forest) -> int:
    return forest.get_n_items()
