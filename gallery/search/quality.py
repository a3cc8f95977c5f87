"""How good served results are: exact search as the reference, and recall of the served results against it."""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from gallery import embedding
from gallery.models import Gallery, Image
from gallery.search.calibration import TIE
from gallery.search.engine import exact_scan, search_vector
from gallery.vectors import matrix


def exact_search(
    *, gallery: Gallery, vectors: npt.ArrayLike, k: int, exclude_ids: Sequence[int] | None = None
) -> list[list[int]]:
    """Return, per query, the k nearest searchable image pks of the gallery by brute force.

    `vectors` is (Q, D); `exclude_ids` (Q,) optionally drops one pk per query
    (the query image itself). The reference that served results are measured against.
    """
    return [pks for pks, _dist in _exact(gallery, vectors, k, exclude_ids)]


def _exact(
    gallery: Gallery, vectors: npt.ArrayLike, k: int, exclude_ids: Sequence[int] | None
) -> list[tuple[list[int], list[float]]]:
    """Return, per query, (pks, distances) of the k nearest searchable images, nearest first."""
    version = embedding.served_version(gallery)
    queries = np.asarray(vectors, dtype=np.float32).reshape(-1, embedding.dim_of(version))  # (Q, D)
    rows = Image.objects.searchable().filter(gallery=gallery, embedding_version=version)
    extra = 0 if exclude_ids is None else 1
    pks, dist = exact_scan(rows, queries, k + extra)
    result: list[tuple[list[int], list[float]]] = []
    for q, (row, far) in enumerate(zip(pks.tolist(), dist.tolist(), strict=True)):
        pairs = [(pk, d) for pk, d in zip(row, far, strict=True) if exclude_ids is None or pk != exclude_ids[q]]
        result.append(([pk for pk, _ in pairs[:k]], [d for _, d in pairs[:k]]))
    return result


def index_recall(*, gallery: Gallery, sample: int = 200, k: int = 10, seed: int = 0) -> dict[str, int | float | None]:
    """Measure served "find similar" results against exact search on a sample of the gallery.

    Each sampled image is a query (excluding itself) answered as its owner sees
    it. Return {"queries", "k", "recall", "worst", "index_version", "index_items"}:
    recall@k is the mean share of the exact k nearest that the served k contain,
    a served image as near as the true k-th (within calibration.TIE, float
    rounding) counting as found, as the build's own calibration counts it.
    """
    version = embedding.served_version(gallery)
    rows = Image.objects.searchable().filter(gallery=gallery, embedding_version=version)
    pks = np.array(rows.order_by("pk").values_list("pk", flat=True), dtype=np.int64)  # (N,)
    build = gallery.current_build()
    info: dict[str, int | float | None] = {
        "queries": 0,
        "k": k,
        "recall": None,
        "worst": None,
        "index_version": build.version if build else None,
        "index_items": build.item_count if build else 0,
    }
    if len(pks) < 2:
        return info
    drawn = np.random.default_rng(seed).choice(pks, size=min(sample, len(pks)), replace=False)  # (S,)
    found = dict(rows.filter(pk__in=drawn.tolist()).values_list("pk", "embedding"))
    chosen = [int(pk) for pk in drawn if int(pk) in found]
    queries = matrix([found[pk] for pk in chosen], embedding.dim_of(version))  # (S, D)
    truth = _exact(gallery, queries, k, chosen)
    recalls: list[float] = []
    for pk, vec, (exact, far) in zip(chosen, queries, truth, strict=True):
        served = search_vector(user=gallery.owner, gallery=gallery, vector=vec, k=k, exclude_id=pk)
        if not exact:
            recalls.append(1.0)
            continue
        wanted = set(exact)
        hits = sum(1 for m in served if m.image.pk in wanted or m.distance <= far[-1] + TIE)
        recalls.append(min(hits, len(exact)) / len(exact))
    info.update(queries=len(recalls), recall=float(np.mean(recalls)), worst=float(np.min(recalls)))
    return info
