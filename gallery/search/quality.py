"""How good served results are: exact search as the reference, and recall of the served results against it."""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from gallery import embedding
from gallery.models import Gallery, Image
from gallery.search.engine import exact_scan, search_vector
from gallery.vectors import matrix


def exact_search(
    *, gallery: Gallery, vectors: npt.ArrayLike, k: int, exclude_ids: Sequence[int] | None = None
) -> list[list[int]]:
    """Return, per query, the k nearest searchable image pks of the gallery by brute force.

    `vectors` is (Q, D); `exclude_ids` (Q,) optionally drops one pk per query
    (the query image itself). The reference that served results are measured against.
    """
    queries = np.asarray(vectors, dtype=np.float32).reshape(-1, embedding.dim())  # (Q, D)
    rows = Image.objects.searchable().filter(gallery=gallery, embedding_version=embedding.version())
    extra = 0 if exclude_ids is None else 1
    pks, _dist = exact_scan(rows, queries, k + extra)
    result: list[list[int]] = []
    for q, row in enumerate(pks.tolist()):
        if exclude_ids is not None:
            row = [pk for pk in row if pk != exclude_ids[q]]
        result.append(row[:k])
    return result


def index_recall(*, gallery: Gallery, sample: int = 200, k: int = 10, seed: int = 0) -> dict[str, int | float | None]:
    """Measure served "find similar" results against exact search on a sample of the gallery.

    Each sampled image is a query (excluding itself) answered as its owner sees
    it. Return {"queries", "k", "recall", "worst", "index_version", "index_items"}:
    recall@k is the mean share of the exact k nearest that the served k contain.
    """
    rows = Image.objects.searchable().filter(gallery=gallery, embedding_version=embedding.version())
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
    queries = matrix([found[pk] for pk in chosen], embedding.dim())  # (S, D)
    truth = exact_search(gallery=gallery, vectors=queries, k=k, exclude_ids=chosen)
    recalls: list[float] = []
    for pk, vec, exact in zip(chosen, queries, truth, strict=True):
        served = {
            m.image.pk for m in search_vector(user=gallery.owner, gallery=gallery, vector=vec, k=k, exclude_id=pk)
        }
        recalls.append(len(served & set(exact)) / len(exact) if exact else 1.0)
    info.update(queries=len(recalls), recall=float(np.mean(recalls)), worst=float(np.min(recalls)))
    return info
