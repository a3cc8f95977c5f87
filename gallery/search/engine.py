"""Similarity search over a gallery: index candidates, the delta, exact re-rank, visibility, paging."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Protocol, cast

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.db.models import QuerySet

from gallery import access, embedding, vectors
from gallery.embedding import imaging
from gallery.models import EmbeddingState, Gallery, Image, Visibility
from gallery.search import ann, bands, cache, projection, reads
from gallery.search.store import IndexUnavailable, Ref, ref_for

logger = logging.getLogger(__name__)

# Images embedded this long before a build's snapshot are still searched exactly:
# covers a worker whose transaction committed after the build read the table.
SNAPSHOT_MARGIN = timedelta(minutes=5)
EXACT_CHUNK = 4096  # rows per step of an exact scan: bounds memory at any gallery size


@dataclass
class Match:
    image: reads.ResultImage | Image  # a result card uses pk, original_name, get_absolute_url()
    distance: float  # cosine distance, 0 (same direction) .. 2
    rank: int = 0
    band: str = ""  # a key of bands.BANDS; "" where the gallery has no fitted bands yet
    percentile: float | None = None  # share of the gallery's pairs farther apart, 0..100

    @property
    def band_label(self) -> str:
        return bands.LABELS.get(self.band, "")

    @property
    def similarity(self) -> float:
        """Cosine similarity as a percentage, 0..100."""
        return max(0.0, min(100.0, (1.0 - self.distance) * 100.0))


@dataclass
class Results:
    """One page of results, and how many results each band holds (with `counts`)."""

    matches: list[Match]
    # {band key: results in that band or closer} among the COUNT_DEPTH nearest, or {} without bands.
    counts: dict[str, int] = field(default_factory=dict)
    # Bands whose count reached the depth searched: "at least" that many.
    saturated: frozenset[str] = frozenset()


# Results counted per band for the threshold control: the nearest this many,
# and every near-duplicate the hashes find anywhere in the gallery.
COUNT_DEPTH = 100


# Images newer than the index version: pk -> (vector (D,), perceptual hash).
Delta = dict[int, tuple[npt.NDArray[np.float32], int]]


class _Candidates(Protocol):
    """reads.visible_candidates with the gallery, the viewer and the excluded image bound."""

    def __call__(self, *, pks: Sequence[int], recent_after: datetime, new_after: datetime) -> list[reads.Candidate]: ...


# --- One index version ------------------------------------------------------


def index_search(
    ref: Ref,
    vector: npt.ArrayLike,
    n: int,
    search_k: int | None = None,
    *,
    pool: int | None = None,
    exact: bool | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Return the approximate `n` nearest items of an index version to `vector`.

    Returns (pks, distances): (M,) int64 and (M,) float32 cosine distances
    (1 - cos) computed exactly from the stored vectors, M <= n, nearest first,
    ties by pk. A version calibrated as exact (small galleries, where a scan is
    as fast as the forest) is scanned; otherwise Annoy finds a pool of
    candidates with the version's calibrated search_k. `search_k`, `pool` and
    `exact` override the version's choice (calibration and benchmarks measure
    with them). Raises IndexUnavailable when the index cannot be used.
    """
    loaded = cache.load(ref)
    query = np.asarray(vector, dtype=np.float32).reshape(loaded.vectors.shape[1])  # (D,)
    n = min(n, ref.item_count)
    if ref.exact if exact is None else exact:
        distances = vectors.cosine_distances(loaded.vectors, query)  # (N,) the whole version
        positions = np.arange(len(distances), dtype=np.int64)  # (N,)
        if n < len(distances):
            # Everything at the n-th distance is kept, so ties are broken by pk below, not by argpartition.
            nth = np.partition(distances, n - 1)[n - 1]
            positions = np.flatnonzero(distances <= nth)  # (>= n,)
            distances = distances[positions]
    else:
        pool = pool or ann.pool_for(n, ref.item_count, ref.pool)
        search_k = search_k or ann.search_k_for(ref.n_trees, n, ref.item_count, (ref.search_k, ref.pool))
        found = ann.query(loaded.forest, projection.project(loaded.pca, query), pool, search_k)  # (d,) projected
        positions = np.asarray(found, dtype=np.int64)  # (P,) the pool, in projected order
        distances = vectors.cosine_distances(loaded.vectors[positions], query)  # (P,) exact re-rank
    pks = loaded.ids[positions]  # (P,)
    order = np.lexsort((pks, distances))[:n]  # (M,)
    return pks[order], distances[order]


def index_contains(ref: Ref, pks: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Return a boolean mask: which of `pks` ((P,) int64) are items of this index version."""
    loaded = cache.load(ref)
    pks = np.asarray(pks, dtype=np.int64)  # (P,)
    if not len(loaded.ids) or not len(pks):
        return np.zeros(len(pks), dtype=bool)
    at = np.minimum(np.searchsorted(loaded.ids, pks), len(loaded.ids) - 1)
    return loaded.ids[at] == pks


def index_vector(ref: Ref, pk: int) -> npt.NDArray[np.float32] | None:
    """Return the (D,) float32 vector this version holds for image `pk`, or None if it holds none."""
    loaded = cache.load(ref)
    at = int(np.searchsorted(loaded.ids, pk))
    if at < len(loaded.ids) and loaded.ids[at] == pk:
        return np.array(loaded.vectors[at])
    return None


# --- A gallery, as one viewer sees it ---------------------------------------


def search_vector(
    *,
    user: access.Viewer,
    gallery: Gallery,
    vector: npt.ArrayLike,
    k: int | None = None,
    offset: int = 0,
    max_distance: float | None = None,
    exclude_id: int | None = None,
    band: str | None = None,
    query_hashes: tuple[int, int] | None = None,
) -> list[Match]:
    """Return the nearest images of `gallery` to `vector` that `user` may see (search_results' matches)."""
    return search_results(
        user=user,
        gallery=gallery,
        vector=vector,
        k=k,
        offset=offset,
        max_distance=max_distance,
        exclude_id=exclude_id,
        band=band,
        query_hashes=query_hashes,
    ).matches


def search_results(
    *,
    user: access.Viewer,
    gallery: Gallery,
    vector: npt.ArrayLike,
    k: int | None = None,
    offset: int = 0,
    max_distance: float | None = None,
    exclude_id: int | None = None,
    band: str | None = None,
    query_hashes: tuple[int, int] | None = None,
    counts: bool = False,
) -> Results:
    """Return the nearest images of `gallery` to `vector` that `user` may see: copies first, then nearest first.

    `gallery` is one `user` may open (selectors.gallery_for_view, image_for_view).
    Candidates come from the gallery's Annoy index plus an exact scan of images
    embedded after it was built (the delta); every candidate is ranked by exact
    cosine distance, and rows that are deleted, rejected, of another embedding
    version or hidden from `user` are dropped by one database query, which also
    reads what a result shows. When the index cannot be used the whole gallery
    is searched exactly and a rebuild is queued.

    With the build's fitted bands (gallery.search.bands) each result gets a
    band and a percentile; exact copies and near-duplicates (found also by
    perceptual hash, `query_hashes` = the query picture's (hash, mirror hash),
    anywhere in the index) come first. `band` keeps only results in that band
    or closer; `counts` also counts the results per band among the COUNT_DEPTH
    nearest, for the threshold control.
    """
    k = k or settings.IMAGESEARCH_DEFAULT_K
    want = offset + k
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)  # (D,)
    version = embedding.served_version(gallery)  # during a switch: the previous version, until the flip
    sees_all = access.sees_every_image(user, gallery)
    if not sees_all and gallery.visibility != Visibility.PUBLIC:
        return Results([])

    def base() -> QuerySet[Image]:
        # No ORDER BY: results are ranked by distance here, never by the model's ordering.
        rows = Image.objects.searchable().visible_to(user).filter(gallery=gallery, embedding_version=version).order_by()
        return rows.exclude(pk=exclude_id) if exclude_id is not None else rows

    build = gallery.current_build()
    if build is not None and build.item_count and build.embedding_version == version:
        candidates = functools.partial(
            reads.visible_candidates,
            gallery_id=gallery.pk,
            embedding_version=version,
            exclude_id=exclude_id,
            public_only=not sees_all,
        )
        fitted = bands.Fitted.from_json(build.bands)
        # With bands, copies come first, from among the nearest COUNT_DEPTH (and
        # the hash matches): the same set for every page, so pages never overlap.
        depth = max(want, COUNT_DEPTH) if fitted else want
        ref = ref_for(build)
        try:
            pks, dist, names, delta = _search_indexed(
                candidates, base, ref, build.snapshot_at, vector, depth, max_distance, effort=want
            )
            if fitted is None:
                return Results(_matches(gallery, pks, dist, offset, want, names))
            return _banded(
                gallery, ref, fitted, candidates, build.snapshot_at, vector, query_hashes,
                (pks, dist, names, delta), offset, want, depth, max_distance, band, exclude_id, counts,
            )  # fmt: skip
        except IndexUnavailable as exc:
            logger.warning("index of gallery %s unusable (%s): exact search, rebuild queued", gallery.pk, exc)
            Gallery.objects.filter(pk=gallery.pk).mark_index_stale()
    pks, dist = exact_scan(base(), vector[None, :], want)
    pks, dist = pks[0], dist[0]
    if max_distance is not None:
        keep = dist <= max_distance
        pks, dist = pks[keep], dist[keep]
    return Results(_matches(gallery, pks, dist, offset, want))


def _banded(
    gallery: Gallery,
    ref: Ref,
    fitted: bands.Fitted,
    candidates: _Candidates,
    snapshot_at: datetime,
    vector: npt.NDArray[np.float32],
    query_hashes: tuple[int, int] | None,
    found: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], dict[int, str], Delta],
    offset: int,
    want: int,
    depth: int,
    max_distance: float | None,
    band: str | None,
    exclude_id: int | None,
    counts: bool,
) -> Results:
    """Classify ranked candidates into bands, add near-duplicates found by hash, filter, count and page them."""
    pks, dist, names, delta = found
    pks, dist = pks[:depth], dist[:depth]  # nearest first: the depth searched
    saturated_at = float(dist[-1]) if len(pks) >= depth else None  # how far that reached, when it was full
    loaded = cache.load(ref)
    if query_hashes is not None:
        # Near-duplicates by hash anywhere in the version, beyond the nearest by distance.
        hit = np.flatnonzero(bands.hash_distances(query_hashes, loaded.hashes) <= fitted.hash_bits)
        extra = sorted(set(loaded.ids[hit].tolist()) - set(pks.tolist()) - set(delta) - {exclude_id})
        if extra:
            rows = candidates(pks=extra, recent_after=snapshot_at, new_after=snapshot_at)
            wanted = set(extra)  # the rows also name the delta, already counted
            visible = [pk for pk, _name, _recent, _new in rows if pk in wanted]
            names.update((pk, name) for pk, name, _recent, _new in rows)
            at = np.searchsorted(loaded.ids, visible)
            extra_dist = vectors.cosine_distances(loaded.vectors[at], vector) if len(at) else np.zeros(0, np.float32)
            keep = extra_dist <= max_distance if max_distance is not None else np.ones(len(at), dtype=bool)
            pks = np.concatenate([pks, np.asarray(visible, dtype=np.int64)[keep]])
            dist = np.concatenate([dist, extra_dist[keep].astype(np.float32)])
    # Each result's vector and hash: the delta's where it has one, else the version's.
    vecs = np.zeros((len(pks), len(vector)), dtype=np.float32)  # (M, D)
    hashes = np.zeros(len(pks), dtype=np.int64)  # (M,)
    in_delta = np.array([pk in delta for pk in pks.tolist()], dtype=bool)
    at = np.minimum(np.searchsorted(loaded.ids, pks[~in_delta]), max(0, len(loaded.ids) - 1))
    vecs[~in_delta] = loaded.vectors[at] if len(at) else vecs[~in_delta]
    hashes[~in_delta] = loaded.hashes[at] if len(at) else hashes[~in_delta]
    for i in np.flatnonzero(in_delta):
        vecs[i], hashes[i] = delta[int(pks[i])]
    keys = fitted.classify(
        dist,
        hash_distances=bands.hash_distances(query_hashes, hashes),
        white_distances=bands.white_distances(loaded.white, vector, vecs),
    )
    rank = np.array([min(bands.RANK[key], 2) for key in keys], dtype=np.int64)  # copies first, then by distance
    order = np.lexsort((pks, dist, rank))
    pks, dist = pks[order], dist[order]
    keys = [keys[i] for i in order]
    counted: dict[str, int] = {}
    for key in bands.KEYS:
        counted[key] = sum(1 for b in keys if bands.RANK[b] <= bands.RANK[key])
    # A band reaching past the farthest result searched may hold more than counted.
    # ("near" is complete: the hashes were matched against the whole version.)
    reach = {key: fitted.threshold(key) for key in bands.KEYS}
    reach["distant"] = np.inf
    saturated = frozenset(
        key for key, limit in reach.items() if saturated_at is not None and limit is not None and limit >= saturated_at
    )
    if band:
        keep_rows = [i for i, b in enumerate(keys) if bands.RANK[b] <= bands.RANK[band]]
        pks, dist, keys = pks[keep_rows], dist[keep_rows], [keys[i] for i in keep_rows]
    matches = _matches(gallery, pks, dist, offset, want, names)
    by_pk = dict(zip(pks[offset:want].tolist(), keys[offset:want], strict=True))
    percentiles = fitted.percentile([m.distance for m in matches]).tolist()
    for m, p in zip(matches, percentiles, strict=True):
        m.band = by_pk[m.image.pk]
        m.percentile = round(p, 2)
    return Results(matches, counted, saturated) if counts else Results(matches)


def _search_indexed(
    candidates: _Candidates,
    base: Callable[[], QuerySet[Image]],
    ref: Ref,
    snapshot_at: datetime,
    vector: npt.NDArray[np.float32],
    want: int,
    max_distance: float | None,
    effort: int | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], dict[int, str], Delta]:
    """Return (pks, distances, {pk: name}, delta) of at least the best `want` visible candidates, nearest first.

    `effort` (<= want) sizes the forest's search_k for that many results
    rather than `want` in the first round: the bands' depth needs the nearest
    100 for counting, not found as carefully as the page shown (the pool still
    holds `want`, re-ranked exactly). Later rounds, for hidden rows, search as
    hard as their size.

    One query per round answers what the index cannot: which candidates the
    viewer may see (and their names), and which images are newer than the index
    (the delta: {pk: (vector, perceptual hash)}). The delta's vectors are
    fetched only when there is one.
    """
    cutoff = snapshot_at - SNAPSHOT_MARGIN
    delta: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], Delta] | None = None
    names: dict[int, str] = {}
    # Hidden, rejected or deleted items still in the index may crowd the first
    # candidates out: ask the index for more until `want` visible ones are found.
    # The first round asks for a quarter more (at least 8): each candidate is a
    # row the visibility query reads, and most galleries hide few images.
    n = min(ref.item_count, want + max(8, want // 4))
    search_k = None
    if effort is not None and effort < want:
        shown = min(ref.item_count, effort + max(8, effort // 4))
        search_k = ann.search_k_for(ref.n_trees, shown, ref.item_count, (ref.search_k, ref.pool))
    while True:
        found_pks, found_dist = index_search(ref, vector, n, search_k)  # (M,), (M,) nearest first
        search_k = None
        rows = candidates(pks=found_pks.tolist(), recent_after=cutoff, new_after=snapshot_at)
        names.update((pk, name) for pk, name, _recent, _new in rows)
        if delta is None:
            delta = _delta(base, ref, rows, vector)
        delta_pks, delta_dist, delta_rows = delta
        # Re-embedded since the build: the delta's vector wins. (Sets, not np.isin:
        # on a few dozen items np.isin sorts, about five times the cost.)
        visible = {row[0] for row in rows}.difference(delta_pks.tolist())
        visible_found = np.fromiter(
            (pk in visible for pk in found_pks.tolist()), dtype=bool, count=len(found_pks)
        )  # (M,)
        pks = np.concatenate([found_pks[visible_found], delta_pks])
        dist = np.concatenate([found_dist[visible_found], delta_dist]).astype(np.float32)
        order = np.lexsort((pks, dist))  # nearest first, ties by pk: stable across calls
        pks, dist = pks[order], dist[order]
        if max_distance is not None:
            keep = dist <= max_distance
            pks, dist = pks[keep], dist[keep]
        exhausted = n >= ref.item_count or len(found_pks) < n
        beyond = max_distance is not None and len(found_dist) and found_dist[-1] > max_distance
        if len(pks) >= want or exhausted or beyond:
            return pks, dist, names, delta_rows
        n = min(ref.item_count, n * 8)  # rare, so ask generously: the deeper the rank, the wider the pool must be


def _delta(
    base: Callable[[], QuerySet[Image]], ref: Ref, rows: Sequence[reads.Candidate], vector: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], Delta]:
    """Return (pks (R,), distances (R,), {pk: (vector, hash)}) of visible images the index does not hold.

    Those embedded after the build read the table, plus any embedded shortly
    before it whose transaction committed too late to be read.
    """
    recent = [(pk, new) for pk, _name, is_recent, new in rows if is_recent]
    pks = np.array([pk for pk, _ in recent], dtype=np.int64)  # (R,)
    if len(pks):
        new = np.array([new for _, new in recent], dtype=bool)
        pks = pks[new | ~index_contains(ref, pks)]
    if not len(pks):
        return pks, np.zeros(0, dtype=np.float32), {}
    # Searchable rows are embedded: their vector is never NULL.
    found = cast(
        "list[tuple[int, vectors.Blob, int | None]]",
        list(base().filter(pk__in=pks.tolist()).values_list("pk", "embedding", "phash")),
    )
    pks = np.array([pk for pk, _, _ in found], dtype=np.int64)  # (R,)
    matrix = vectors.matrix([e for _, e, _ in found], len(vector))  # (R, D)
    rows_by_pk: Delta = {pk: (matrix[i], imaging.NO_HASH if h is None else h) for i, (pk, _, h) in enumerate(found)}
    return pks, vectors.cosine_distances(matrix, vector), rows_by_pk  # (R,), (R,)


def _matches(
    gallery: Gallery,
    pks: npt.NDArray[np.int64],
    dist: npt.NDArray[np.float32],
    offset: int,
    want: int,
    names: dict[int, str] | None = None,
) -> list[Match]:
    """Turn ranked visible (pks, distances) into Match rows for the page [offset, want).

    A result card shows an image's name and links by pk: Match.image is a
    reads.ResultImage holding just those; `names` comes from the visibility query,
    or is read here for an exact search.
    """
    page = list(zip(pks[offset:want].tolist(), dist[offset:want].tolist(), strict=True))
    if names is None:
        names = dict(Image.objects.filter(pk__in=[pk for pk, _ in page]).values_list("pk", "original_name"))
    # A row deleted between the ranking and the fetch is skipped, not an error.
    return [
        Match(image=reads.ResultImage(pk, names[pk], gallery.pk), distance=max(d, 0.0), rank=offset + r + 1)
        for r, (pk, d) in enumerate(page)
        if pk in names
    ]


def exact_scan(
    rows_qs: QuerySet[Image], queries: npt.NDArray[np.float32], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Brute-force the k nearest rows of `rows_qs` to each query, scanning in chunks.

    `queries` is (Q, D) float32. Returns (pks, distances), each (Q, <=k),
    nearest first, ties by pk.
    """
    dim = queries.shape[1]
    best_pks = np.zeros((len(queries), 0), dtype=np.int64)  # (Q, <=k)
    best_dist = np.zeros((len(queries), 0), dtype=np.float32)  # (Q, <=k)
    # The rows are searchable ones (embedded): their vector is never NULL.
    rows = cast(
        "Iterator[tuple[int, vectors.Blob]]",
        rows_qs.order_by().values_list("pk", "embedding").iterator(chunk_size=EXACT_CHUNK),
    )
    while True:
        chunk = list(islice(rows, EXACT_CHUNK))
        if not chunk:
            break
        pks = np.array([pk for pk, _ in chunk], dtype=np.int64)  # (C,)
        dist = vectors.cosine_distances(vectors.matrix([e for _, e in chunk], dim), queries)  # (Q, C)
        all_pks = np.concatenate([best_pks, np.broadcast_to(pks, (len(queries), len(pks)))], axis=1)
        all_dist = np.concatenate([best_dist, dist.astype(np.float32)], axis=1)
        order = np.lexsort((all_pks, all_dist), axis=1)[:, :k]  # (Q, <=k)
        best_pks = np.take_along_axis(all_pks, order, axis=1)
        best_dist = np.take_along_axis(all_dist, order, axis=1)
    return best_pks, best_dist


def similar_images(
    *,
    user: access.Viewer,
    image: Image,
    k: int | None = None,
    offset: int = 0,
    max_distance: float | None = None,
    band: str | None = None,
) -> list[Match]:
    """Return the images of the same gallery nearest `image`, excluding itself (similar_results' matches)."""
    return similar_results(user=user, image=image, k=k, offset=offset, max_distance=max_distance, band=band).matches


def similar_results(
    *,
    user: access.Viewer,
    image: Image,
    k: int | None = None,
    offset: int = 0,
    max_distance: float | None = None,
    band: str | None = None,
    counts: bool = False,
) -> Results:
    """Return search_results for the images of the same gallery nearest `image`, excluding itself."""
    if image.embedding_state != EmbeddingState.READY:
        return Results([])
    if image.embedding_version != embedding.served_version(image.gallery):
        return Results([])  # a vector of another version cannot be compared with the gallery's (a switch)
    vec = _indexed_vector(image)
    if vec is None:
        vec = image.vector
    if vec is None:
        return Results([])
    return search_results(
        user=user,
        gallery=image.gallery,
        vector=vec,
        k=k,
        offset=offset,
        max_distance=max_distance,
        exclude_id=image.pk,
        band=band,
        query_hashes=image_hashes(image),
        counts=counts,
    )


def image_hashes(image: Image) -> tuple[int, int] | None:
    """Return an image's (perceptual hash, mirror hash), or None when it has none (uploaded before hashes)."""
    if image.phash is None or image.phash_mirror is None:
        return None
    return image.phash, image.phash_mirror


def indexed_vector(image: Image) -> npt.NDArray[np.float32] | None:
    """The image's vector as its gallery's current index holds it, or None (then read its row): _indexed_vector."""
    return _indexed_vector(image)


def _indexed_vector(image: Image) -> npt.NDArray[np.float32] | None:
    """Return the image's vector as its gallery's current index holds it, or None.

    Saves reading the 2 KB embedding column (which PostgreSQL stores out of
    line) on every "find similar". Only for an image embedded well before the
    build read the table (SNAPSHOT_MARGIN), in the build's embedding version:
    one embedded again since then is read from its row.
    """
    build = image.gallery.current_build()
    if (
        build is None
        or image.embedded_at is None
        or image.embedding_version != build.embedding_version
        or image.embedded_at > build.snapshot_at - SNAPSHOT_MARGIN
    ):
        return None
    try:
        return index_vector(ref_for(build), image.pk)
    except IndexUnavailable:
        return None
