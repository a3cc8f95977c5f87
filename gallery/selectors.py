"""Reads: what a person may see, and similarity search over the DB and the index."""

import logging
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice

import numpy as np
from django.conf import settings
from django.db.models import Count, Min, Q
from django.http import Http404
from django.utils import timezone

from gallery import embeddings, index
from gallery.models import EmbeddingState, Gallery, Image, IndexBuild, ModerationState, Visibility

logger = logging.getLogger(__name__)

# Images embedded this long before a build's snapshot are still searched exactly:
# covers a worker whose transaction committed after the build read the table.
SNAPSHOT_MARGIN = timedelta(minutes=5)


# --- Permissions ------------------------------------------------------------


def galleries_visible_to(user):
    if user.is_authenticated and user.is_staff:
        return Gallery.objects.all()
    q = Q(visibility=Visibility.PUBLIC)
    if user.is_authenticated:
        q |= Q(owner=user)
    return Gallery.objects.filter(q)


def gallery_for_view(*, user, slug):
    """Return the gallery or raise Http404 (also for a private gallery of someone else)."""
    gallery = galleries_visible_to(user).filter(slug=slug).select_related("owner").first()
    if gallery is None:
        raise Http404("No such gallery.")
    return gallery


def gallery_for_owner(*, user, slug):
    """Return the gallery if `user` owns it; 404 otherwise (strangers cannot probe slugs)."""
    gallery = Gallery.objects.filter(slug=slug, owner_id=user.pk).first() if user.is_authenticated else None
    if gallery is None:
        raise Http404("No such gallery.")
    return gallery


def image_for_view(*, user, pk):
    image = Image.objects.visible_to(user).filter(pk=pk).select_related("gallery", "gallery__owner").first()
    if image is None:
        raise Http404("No such image.")
    return image


def can_edit(user, gallery):
    return user.is_authenticated and gallery.owner_id == user.pk


# --- Status -----------------------------------------------------------------


def gallery_status(*, gallery):
    """Counts by embedding state, throughput over the last minute and an ETA."""
    counts = dict.fromkeys(EmbeddingState.values, 0)
    for row in gallery.images.values("embedding_state").annotate(n=Count("pk")):
        counts[row["embedding_state"]] = row["n"]
    window = 60
    now = timezone.now()
    recent = gallery.images.filter(embedded_at__gte=now - timedelta(seconds=window)).aggregate(
        n=Count("pk"), since=Min("claimed_at")
    )
    # Images per second over the last minute; when the work began less than a
    # minute ago, over the time since its first claim (a batch is written at its
    # end, so counting from the first write would overstate the rate).
    elapsed = window
    if recent["since"] is not None:
        elapsed = min(window, max((now - recent["since"]).total_seconds(), 1.0))
    rate = recent["n"] / elapsed
    remaining = counts[EmbeddingState.PENDING] + counts[EmbeddingState.PROCESSING]
    total = sum(counts.values())
    build = gallery.current_build()
    return {
        "counts": counts,
        "total": total,
        "done": counts[EmbeddingState.READY] + counts[EmbeddingState.FAILED],
        "remaining": remaining,
        "images_per_second": round(rate, 2),
        "eta_seconds": round(remaining / rate) if rate > 0 and remaining else None,
        "index": {
            "version": build.version if build else None,
            "items": build.item_count if build else 0,
            "built_at": build.built_at.isoformat() if build else None,
            "stale": gallery.index_dirty,
        },
    }


# --- Similarity -------------------------------------------------------------


@dataclass
class Match:
    image: Image
    distance: float  # cosine distance, 0 (same direction) .. 2
    rank: int = 0

    @property
    def similarity(self):
        """Cosine similarity as a percentage, 0..100."""
        return max(0.0, min(100.0, (1.0 - self.distance) * 100.0))


def _vectors(rows):
    return np.frombuffer(b"".join(bytes(r) for r in rows), dtype="<f4").reshape(len(rows), embeddings.DIM)


EXACT_CHUNK = 4096  # rows per step of an exact scan: bounds memory at any gallery size


def search_vector(*, user, gallery, vector, k=None, offset=0, max_distance=None, exclude_id=None):
    """Return the nearest images of `gallery` to `vector` that `user` may see, nearest first.

    Candidates come from the gallery's Annoy index plus an exact scan of images
    embedded after it was built (the delta); every candidate is ranked by exact
    cosine distance, and rows that are deleted, rejected, of another embedding
    version or hidden from `user` are dropped by one database filter. When the
    index cannot be used the whole gallery is searched exactly and a rebuild is
    queued.
    """
    k = k or settings.IMAGESEARCH_DEFAULT_K
    want = offset + k
    vector = np.asarray(vector, dtype=np.float32).reshape(embeddings.DIM)  # (512,)
    version = embeddings.version()
    # No ORDER BY: results are ranked by distance here, never by the model's ordering.
    base = Image.objects.searchable().visible_to(user).filter(gallery=gallery, embedding_version=version).order_by()
    if exclude_id is not None:
        base = base.exclude(pk=exclude_id)

    build = (
        IndexBuild.objects.filter(gallery=gallery, status=IndexBuild.Status.READY, embedding_version=version)
        .order_by("-version")
        .first()
    )
    if build is not None and build.item_count:
        ref = index.Ref(gallery.pk, build.version, build.checksum, build.n_trees, build.item_count)
        try:
            pks, dist = _search_indexed(base, ref, build.snapshot_at, vector, want, max_distance)
        except index.IndexUnavailable as exc:
            logger.warning("index of gallery %s unusable (%s): exact search, rebuild queued", gallery.pk, exc)
            _queue_rebuild(gallery.pk)
        else:
            return _matches(pks, dist, offset, want)
    pks, dist = _exact(base, vector[None, :], want)
    pks, dist = pks[0], dist[0]
    if max_distance is not None:
        keep = dist <= max_distance
        pks, dist = pks[keep], dist[keep]
    return _matches(pks, dist, offset, want)


def _search_indexed(base, ref, snapshot_at, vector, want, max_distance):
    """Return (pks, distances) of at least the best `want` visible candidates, nearest first.

    One query per round answers both questions the index cannot: which
    candidates `user` may see, and which images are newer than the index (the
    delta). Their vectors are fetched only when there is a delta.
    """
    cutoff = snapshot_at - SNAPSHOT_MARGIN
    delta_pks = delta_dist = None
    # Hidden, rejected or deleted items still in the index may crowd the first
    # candidates out: ask the index for more until `want` visible ones are found.
    n = min(ref.item_count, max(2 * want, want + 32))
    while True:
        found_pks, found_dist = index.search(ref, vector, n)  # (M,), (M,) nearest first
        rows = list(
            base.filter(Q(pk__in=found_pks.tolist()) | Q(embedded_at__gt=cutoff)).values_list("pk", "embedded_at")
        )
        if delta_pks is None:
            delta_pks, delta_dist = _delta(base, ref, snapshot_at, cutoff, rows, vector)
        visible_found = np.isin(found_pks, np.array([pk for pk, _ in rows], dtype=np.int64))  # (M,)
        visible_found &= ~np.isin(found_pks, delta_pks)  # re-embedded since the build: the delta's vector wins
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
            return pks, dist
        n = min(ref.item_count, n * 4)


def _delta(base, ref, snapshot_at, cutoff, rows, vector):
    """Return (pks (D,), distances (D,)) of visible images the index does not hold.

    Those embedded after the build read the table, plus any embedded shortly
    before it whose transaction committed too late to be read.
    """
    recent = [(pk, at) for pk, at in rows if at is not None and at > cutoff]
    pks = np.array([pk for pk, _ in recent], dtype=np.int64)  # (R,)
    if len(pks):
        after = np.array([at > snapshot_at for _, at in recent], dtype=bool)
        pks = pks[after | ~index.contains(ref, pks)]
    if not len(pks):
        return pks, np.zeros(0, dtype=np.float32)
    found = list(base.filter(pk__in=pks.tolist()).values_list("pk", "embedding"))
    pks = np.array([pk for pk, _ in found], dtype=np.int64)  # (D,)
    return pks, 1.0 - _vectors([e for _, e in found]) @ vector  # (D,)


def _matches(pks, dist, offset, want):
    """Turn ranked visible (pks, distances) into Match rows for the page [offset, want)."""
    page = list(zip(pks[offset:want].tolist(), dist[offset:want].tolist()))
    images = Image.objects.defer("embedding").in_bulk([pk for pk, _ in page])
    # A row deleted between the ranking and the fetch is skipped, not an error.
    return [Match(image=images[pk], distance=max(d, 0.0), rank=offset + r + 1) for r, (pk, d) in enumerate(page) if pk in images]


def _exact(rows_qs, queries, k):
    """Brute-force the k nearest rows of `rows_qs` to each query, scanning in chunks.

    `queries` is (Q, 512) float32. Returns (pks, distances), each (Q, <=k),
    nearest first, ties by pk.
    """
    best_pks = np.zeros((len(queries), 0), dtype=np.int64)  # (Q, <=k)
    best_dist = np.zeros((len(queries), 0), dtype=np.float32)  # (Q, <=k)
    rows = rows_qs.order_by().values_list("pk", "embedding").iterator(chunk_size=EXACT_CHUNK)
    while True:
        chunk = list(islice(rows, EXACT_CHUNK))
        if not chunk:
            break
        pks = np.array([pk for pk, _ in chunk], dtype=np.int64)  # (C,)
        dist = 1.0 - queries @ _vectors([e for _, e in chunk]).T  # (Q, C)
        all_pks = np.concatenate([best_pks, np.broadcast_to(pks, (len(queries), len(pks)))], axis=1)
        all_dist = np.concatenate([best_dist, dist.astype(np.float32)], axis=1)
        order = np.lexsort((all_pks, all_dist), axis=1)[:, :k]  # (Q, <=k)
        best_pks = np.take_along_axis(all_pks, order, axis=1)
        best_dist = np.take_along_axis(all_dist, order, axis=1)
    return best_pks, best_dist


def similar_images(*, user, image, k=None, offset=0, max_distance=None):
    """Return the images of the same gallery nearest `image`, excluding itself."""
    vec = image.vector
    if vec is None or image.embedding_state != EmbeddingState.READY:
        return []
    return search_vector(
        user=user, gallery=image.gallery, vector=vec, k=k, offset=offset, max_distance=max_distance, exclude_id=image.pk
    )


def exact_search(*, gallery, vectors, k, exclude_ids=None):
    """Return, per query, the k nearest searchable image pks of the gallery by brute force.

    `vectors` is (Q, 512); `exclude_ids` (Q,) optionally drops one pk per query
    (the query image itself). The reference that served results are measured against.
    """
    queries = np.asarray(vectors, dtype=np.float32).reshape(-1, embeddings.DIM)  # (Q, 512)
    rows = Image.objects.searchable().filter(gallery=gallery, embedding_version=embeddings.version())
    extra = 0 if exclude_ids is None else 1
    pks, _dist = _exact(rows, queries, k + extra)
    result = []
    for q, row in enumerate(pks.tolist()):
        if exclude_ids is not None:
            row = [pk for pk in row if pk != exclude_ids[q]]
        result.append(row[:k])
    return result


def _queue_rebuild(gallery_id):
    from gallery import services

    services.gallery_mark_dirty(gallery_id=gallery_id)


def rejected_neighbours(*, image, k=5):
    """Return the rejected images of the gallery nearest `image` (for moderators)."""
    vec = image.vector
    if vec is None:
        return []
    rows = list(
        Image.objects.filter(
            gallery=image.gallery,
            moderation_state=ModerationState.REJECTED,
            embedding_state=EmbeddingState.READY,
            embedding_version=image.embedding_version,
        )
        .exclude(pk=image.pk)
        .values_list("pk", "embedding")
    )
    if not rows:
        return []
    pks = np.array([pk for pk, _ in rows], dtype=np.int64)
    dist = 1.0 - _vectors([e for _, e in rows]) @ vec
    order = np.argsort(dist)[:k]
    objs = Image.objects.in_bulk([int(pks[i]) for i in order])
    return [Match(image=objs[int(pks[i])], distance=float(dist[i]), rank=r + 1) for r, i in enumerate(order)]


def index_recall(*, gallery, sample=200, k=10, seed=0):
    """Measure served "find similar" results against exact search on a sample of the gallery.

    Each sampled image is a query (excluding itself) answered as its owner sees
    it. Return {"queries", "k", "recall", "worst", "index_version", "index_items"}:
    recall@k is the mean share of the exact k nearest that the served k contain.
    """
    rows = Image.objects.searchable().filter(gallery=gallery, embedding_version=embeddings.version())
    pks = np.array(rows.order_by("pk").values_list("pk", flat=True), dtype=np.int64)  # (N,)
    build = gallery.current_build()
    info = {"queries": 0, "k": k, "recall": None, "worst": None,
            "index_version": build.version if build else None, "index_items": build.item_count if build else 0}
    if len(pks) < 2:
        return info
    chosen = np.random.default_rng(seed).choice(pks, size=min(sample, len(pks)), replace=False)  # (S,)
    found = dict(rows.filter(pk__in=chosen.tolist()).values_list("pk", "embedding"))
    chosen = [int(pk) for pk in chosen if int(pk) in found]
    queries = _vectors([found[pk] for pk in chosen])  # (S, 512)
    truth = exact_search(gallery=gallery, vectors=queries, k=k, exclude_ids=chosen)
    recalls = []
    for pk, vec, exact in zip(chosen, queries, truth):
        served = {m.image.pk for m in search_vector(user=gallery.owner, gallery=gallery, vector=vec, k=k, exclude_id=pk)}
        recalls.append(len(served & set(exact)) / len(exact) if exact else 1.0)
    info.update(queries=len(recalls), recall=float(np.mean(recalls)), worst=float(np.min(recalls)))
    return info
