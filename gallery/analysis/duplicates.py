"""Near-duplicate groups of one index version: pairs in the near-duplicate band -> connected components.

Two kinds of pair, the two signals the bands tell a near-duplicate by
(gallery.search.bands):

- **by perceptual hash**, across the whole version: pairs whose hashes (or
  one's mirror hash against the other's) lie within the fit's hash_bits. The
  63-bit hash is cut into hash_bits + 1 blocks, so any such pair agrees
  exactly on at least one block (pigeonhole); pairs are drawn from runs of
  equal block values in sorted order, then checked on the whole hash. That is
  O(N log N), never all pairs.
- **by embedding**: each item's NEIGHBOURS_SEARCHED nearest in the version's
  forest (Annoy, asked by item, two threads), judged by Fitted.near() exactly
  as a find-similar page judges its results: whitened distance within the
  fitted threshold and below RATIO x the item's NEIGHBOURS-th nearest.

Memory is bounded: the forest and the stored vectors are memory-mapped, the
whitened vectors go to a temporary file, items are judged CHUNK at a time,
and what grows with the gallery is only (N,) arrays and the pairs found.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from gallery.embedding import imaging
from gallery.search import ann, bands, projection, store

logger = logging.getLogger(__name__)

# Neighbours judged per item: twice the ratio test's yardstick, so the
# NEIGHBOURS-th nearest is read among more than just itself.
NEIGHBOURS_SEARCHED = 2 * bands.NEIGHBOURS
CHUNK = 2048  # items judged at a time
THREADS = 2  # Annoy releases the GIL while it searches
# Annoy's own default effort for a query by item (n_trees x results): copies lie
# far closer than ordinary neighbours, so they are found without the wide
# search a find-similar page calibrates for (docs/benchmarks.md, "Near-duplicate groups").
SEARCH_K_PER_TREE = NEIGHBOURS_SEARCHED
# Within a run of equal hash blocks, each entry is checked against at most this
# many that follow it in sorted order: a run of thousands of one flat picture is
# still chained into one group, without its all-pairs square.
HASH_WINDOW = 64
HASH_LENGTH = 63


@dataclass(frozen=True)
class Pairs:
    """Near-duplicate pairs of one version, by item position (a < b)."""

    a: npt.NDArray[np.int64]
    b: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.a)


@dataclass(frozen=True)
class Found:
    """What find() returns: the pairs, the groups they form, and how long it took."""

    pairs: Pairs
    groups: list[npt.NDArray[np.int64]]  # item positions of each group (>= 2), largest first
    seconds: float


def _blocks(bits: int) -> list[tuple[int, int]]:
    """(shift, mask) of bits + 1 blocks covering the hash's HASH_LENGTH bits."""
    count = bits + 1
    edges = np.linspace(0, HASH_LENGTH, count + 1).astype(int)
    return [(int(lo), (1 << int(hi - lo)) - 1) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def hash_pairs(hashes: npt.ArrayLike, mirrors: npt.ArrayLike, bits: int) -> Pairs:
    """Return the pairs whose hashes lie within `bits` (either one mirrored), from (N,) int64 hashes and mirror hashes.

    The rule of a results page (bands.hash_distances: a query's picture or
    its mirror image against the stored pictures), applied both ways. Items
    with imaging.NO_HASH take part in none. Candidates are checked on the
    whole hash as they are drawn, so memory holds only the pairs that match.
    """
    hashes = np.asarray(hashes, dtype=np.int64)
    mirrors = np.asarray(mirrors, dtype=np.int64)
    n = len(hashes)
    known = np.flatnonzero(hashes != imaging.NO_HASH)
    has_mirror = known[mirrors[known] != imaging.NO_HASH]
    values = np.concatenate([hashes[known], mirrors[has_mirror]])  # (E,) plain hashes, then mirror hashes
    owner = np.concatenate([known, has_mirror])  # (E,) entry -> item position
    plain = np.concatenate([np.ones(len(known), bool), np.zeros(len(has_mirror), bool)])
    found_a: list[npt.NDArray[np.int64]] = []
    found_b: list[npt.NDArray[np.int64]] = []
    for shift, mask in _blocks(bits):
        keys = (values >> shift) & mask
        # By block, then by the whole value: within a long run of one block, near hashes sit side by side.
        order = np.lexsort((values, keys))
        sorted_keys = keys[order]
        for step in range(1, HASH_WINDOW + 1):
            same = np.flatnonzero(sorted_keys[step:] == sorted_keys[:-step])
            if not len(same):
                break
            ea, eb = order[same], order[same + step]
            keep = (plain[ea] | plain[eb]) & (owner[ea] != owner[eb])
            keep &= np.bitwise_count(np.bitwise_xor(values[ea], values[eb])) <= bits
            found_a.append(owner[ea[keep]])
            found_b.append(owner[eb[keep]])
    if not found_a:
        return Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64))
    a, b = _unique_pairs(np.concatenate(found_a), np.concatenate(found_b), n)
    return Pairs(a, b)


def _unique_pairs(
    a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], n: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keys = np.sort(lo * np.int64(max(n, 1)) + hi)  # sort and mask: np.unique is 20x slower on 20M keys
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(keys) else keys
    return keys // max(n, 1), keys % max(n, 1)


def embedding_pairs(
    loaded: store.Loaded,
    fitted: bands.Fitted,
    *,
    n_trees: int,
    scratch_dir: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Pairs:
    """Return the pairs whose embeddings put them in the near-duplicate band (or exact copies), by position.

    `loaded` is an opened version; `fitted` its band fit. Hash matches are
    found by hash_pairs(), over the whole version; here a hash counts only
    between neighbours, as on a results page. The whitened vectors are
    written to a temporary file under `scratch_dir` (None: the system's).
    """
    n = len(loaded.ids)
    if n < 2:
        return Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64))
    k = min(NEIGHBOURS_SEARCHED, n - 1)
    search_k = max(1, n_trees) * SEARCH_K_PER_TREE
    whitened = projection.is_whitened(loaded.white) and fitted.white is not None
    found_a: list[npt.NDArray[np.int64]] = []
    found_b: list[npt.NDArray[np.int64]] = []
    with tempfile.TemporaryDirectory(prefix="duplicates-", dir=scratch_dir) as scratch:
        white = _whiten_all(loaded, scratch) if whitened else None
        with ThreadPoolExecutor(THREADS) as pool:
            for start in range(0, n, CHUNK):
                positions = np.arange(start, min(n, start + CHUNK))
                rows = list(pool.map(lambda i: ann.query_item(loaded.forest, int(i), k + 1, search_k), positions))
                neighbours = _neighbour_matrix(positions, rows, k)  # (B, k), -1 padded
                valid = neighbours >= 0
                at = np.where(valid, neighbours, 0)
                cosine = 1.0 - np.einsum("bd,bkd->bk", loaded.vectors[positions], loaded.vectors[at])
                cosine = np.where(valid, cosine, np.inf)
                hashes = loaded.hashes[at]
                hash_bits = np.where(valid, imaging.hash_distance(loaded.hashes[positions][:, None], hashes), 64)
                white_distance = None
                if white is not None:
                    white_distance = 1.0 - np.einsum("bd,bkd->bk", white[positions], white[at])
                    white_distance = np.where(valid, white_distance, np.inf)
                near = fitted.near(cosine, hash_distances=hash_bits, white_distances=white_distance) & valid
                rows_at, cols_at = np.nonzero(near)
                found_a.append(positions[rows_at])
                found_b.append(neighbours[rows_at, cols_at])
                if progress is not None:
                    progress(int(positions[-1]) + 1, n)
        del white
    a, b = _unique_pairs(np.concatenate(found_a), np.concatenate(found_b), n)
    return Pairs(a, b)


def _whiten_all(loaded: store.Loaded, scratch: str) -> npt.NDArray[np.float32]:
    """Whiten every stored vector into a memory-mapped file of `scratch`: (N, WHITEN_DIM) float32."""
    n = len(loaded.ids)
    path = os.path.join(scratch, "white.npy")
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, len(loaded.white) - 1))
    step = 8 * CHUNK
    for start in range(0, n, step):
        out[start : start + step] = projection.whiten(loaded.white, np.asarray(loaded.vectors[start : start + step]))
    out.flush()
    return out


def _neighbour_matrix(positions: npt.NDArray[np.int64], rows: list[list[int]], k: int) -> npt.NDArray[np.int64]:
    """Each item's neighbours without itself, nearest first, padded with -1: (B, k)."""
    out = np.full((len(positions), k), -1, dtype=np.int64)
    for r, (pos, row) in enumerate(zip(positions.tolist(), rows, strict=True)):
        others = [j for j in row if j != pos][:k]
        out[r, : len(others)] = others
    return out


def components(n: int, pairs: Pairs) -> list[npt.NDArray[np.int64]]:
    """Return the connected components of size >= 2 of the pairs over n items, largest first (then lowest position)."""
    if not len(pairs) or n < 2:
        return []
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs.a, pairs.b)), shape=(n, n))
    _count, labels = connected_components(graph, directed=False)
    order = np.argsort(labels, kind="stable")
    cuts = np.flatnonzero(np.diff(labels[order])) + 1
    groups = [g for g in np.split(order, cuts) if len(g) >= 2]
    groups.sort(key=lambda g: (-len(g), int(g[0])))
    return groups


def without(pairs: Pairs, ids: npt.NDArray[np.int64], decided: Iterable[tuple[int, int]]) -> Pairs:
    """Return the pairs except those between images (pks) an owner has decided on; `ids` maps position -> pk."""
    decided = list(decided)
    if not decided or not len(pairs):
        return pairs
    n = max(len(ids), 1)
    lo = np.searchsorted(ids, [min(p) for p in decided])
    hi = np.searchsorted(ids, [max(p) for p in decided])
    inside = (lo < len(ids)) & (hi < len(ids))
    lo, hi = lo[inside], hi[inside]
    decided_lo = np.array([min(p) for p in decided], dtype=np.int64)[inside]
    decided_hi = np.array([max(p) for p in decided], dtype=np.int64)[inside]
    real = (ids[lo] == decided_lo) & (ids[hi] == decided_hi)
    banned = lo[real].astype(np.int64) * n + hi[real]
    keys = pairs.a * n + pairs.b  # a < b, and ids are sorted: position order is pk order
    keep = ~np.isin(keys, banned)
    return Pairs(pairs.a[keep], pairs.b[keep])


def find(
    loaded: store.Loaded,
    fitted: bands.Fitted,
    mirrors: npt.NDArray[np.int64],
    *,
    n_trees: int,
    decided: Iterable[tuple[int, int]] = (),
    scratch_dir: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Found:
    """Return the near-duplicate pairs and groups of one opened version.

    `mirrors` (N,) int64 are the items' mirror hashes in position order
    (imaging.NO_HASH when unknown); `decided` are pairs of image pks never to
    be proposed again.
    """
    started = time.monotonic()
    by_hash = hash_pairs(loaded.hashes, mirrors, fitted.hash_bits)
    by_embedding = embedding_pairs(loaded, fitted, n_trees=n_trees, scratch_dir=scratch_dir, progress=progress)
    n = len(loaded.ids)
    a, b = _unique_pairs(np.concatenate([by_hash.a, by_embedding.a]), np.concatenate([by_hash.b, by_embedding.b]), n)
    pairs = without(Pairs(a, b), np.asarray(loaded.ids), decided)
    groups = components(n, pairs)
    seconds = time.monotonic() - started
    logger.info(
        "%d items: %d pairs by hash, %d by embedding, %d groups in %.1f s",
        n,
        len(by_hash),
        len(by_embedding),
        len(groups),
        seconds,
    )
    return Found(pairs, groups, seconds)
