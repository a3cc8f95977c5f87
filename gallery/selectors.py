"""Reads: what a person may see, and similarity search over the DB and the index."""

import functools
import logging
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice

import numpy as np
from django.conf import settings
from django.db.models import Count, Min, Q
from django.http import Http404
from django.utils import timezone

from gallery import embeddings, index, sql
from gallery.models import EmbeddingState, Gallery, Image, ModerationState, Visibility

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
    """Return the image with its gallery loaded, or raise Http404.

    Every "find similar" and thumbnail request starts here: one prepared query
    (gallery/sql.py), then the visibility rule for the row (Image.is_visible_to).
    """
    image = sql.image_with_gallery(pk)
    if image is None or not image.is_visible_to(user):
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
    image: "sql.ResultImage | Image"  # a result card uses pk, original_name, get_absolute_url()
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

    `gallery` is one `user` may see (gallery_for_view, image_for_view). Candidates
    come from the gallery's Annoy index plus an exact scan of images embedded
    after it was built (the delta); every candidate is ranked by exact cosine
    distance, and rows that are deleted, rejected, of another embedding version
    or hidden from `user` are dropped by one database query, which also reads
    what a result shows. When the index cannot be used the whole gallery is
    searched exactly and a rebuild is queued.
    """
    k = k or settings.IMAGESEARCH_DEFAULT_K
    want = offset + k
    vector = np.asarray(vector, dtype=np.float32).reshape(embeddings.DIM)  # (512,)
    version = embeddings.version()
    sees_all = gallery.shows_every_image_to(user)
    if not sees_all and gallery.visibility != Visibility.PUBLIC:
        return []

    def base():
        # No ORDER BY: results are ranked by distance here, never by the model's ordering.
        rows = Image.objects.searchable().visible_to(user).filter(gallery=gallery, embedding_version=version).order_by()
        return rows.exclude(pk=exclude_id) if exclude_id is not None else rows

    build = gallery.current_build()
    if build is not None and build.item_count and build.embedding_version == version:
        ref = build.ref
        candidates = functools.partial(
            sql.visible_candidates, gallery_id=gallery.pk, embedding_version=version, exclude_id=exclude_id,
            public_only=not sees_all, post_moderation=settings.IMAGESEARCH_MODERATION == "post",
        )
        try:
            pks, dist, names = _search_indexed(candidates, base, ref, build.snapshot_at, vector, want, max_distance)
        except index.IndexUnavailable as exc:
            logger.warning("index of gallery %s unusable (%s): exact search, rebuild queued", gallery.pk, exc)
            _queue_rebuild(gallery.pk)
        else:
            return _matches(gallery, pks, dist, offset, want, names)
    pks, dist = _exact(base(), vector[None, :], want)
    pks, dist = pks[0], dist[0]
    if max_distance is not None:
        keep = dist <= max_distance
        pks, dist = pks[keep], dist[keep]
    return _matches(gallery, pks, dist, offset, want)


def _search_indexed(candidates, base, ref, snapshot_at, vector, want, max_distance):
    """Return (pks, distances, {pk: name}) of at least the best `want` visible candidates, nearest first.

    One query per round answers what the index cannot: which candidates the
    viewer may see (and their names), and which images are newer than the index
    (the delta). The delta's vectors are fetched only when there is one.
    """
    cutoff = snapshot_at - SNAPSHOT_MARGIN
    delta_pks = delta_dist = None
    names = {}
    # Hidden, rejected or deleted items still in the index may crowd the first
    # candidates out: ask the index for more until `want` visible ones are found.
    # The first round asks for a quarter more (at least 8): each candidate is a
    # row the visibility query reads, and most galleries hide few images.
    n = min(ref.item_count, want + max(8, want // 4))
    while True:
        found_pks, found_dist = index.search(ref, vector, n)  # (M,), (M,) nearest first
        rows = candidates(pks=found_pks.tolist(), recent_after=cutoff, new_after=snapshot_at)
        names.update((pk, name) for pk, name, _recent, _new in rows)
        if delta_pks is None:
            delta_pks, delta_dist = _delta(base, ref, rows, vector)
        # Re-embedded since the build: the delta's vector wins. (Sets, not np.isin:
        # on a few dozen items np.isin sorts, about five times the cost.)
        visible = {row[0] for row in rows}.difference(delta_pks.tolist())
        visible_found = np.fromiter((pk in visible for pk in found_pks.tolist()), dtype=bool, count=len(found_pks))  # (M,)
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
            return pks, dist, names
        n = min(ref.item_count, n * 8)  # rare, so ask generously: the deeper the rank, the wider the pool must be


def _delta(base, ref, rows, vector):
    """Return (pks (D,), distances (D,)) of visible images the index does not hold.

    Those embedded after the build read the table, plus any embedded shortly
    before it whose transaction committed too late to be read.
    """
    recent = [(pk, new) for pk, _name, is_recent, new in rows if is_recent]
    pks = np.array([pk for pk, _ in recent], dtype=np.int64)  # (R,)
    if len(pks):
        new = np.array([new for _, new in recent], dtype=bool)
        pks = pks[new | ~index.contains(ref, pks)]
    if not len(pks):
        return pks, np.zeros(0, dtype=np.float32)
    found = list(base().filter(pk__in=pks.tolist()).values_list("pk", "embedding"))
    pks = np.array([pk for pk, _ in found], dtype=np.int64)  # (D,)
    return pks, 1.0 - _vectors([e for _, e in found]) @ vector  # (D,)


def _matches(gallery, pks, dist, offset, want, names=None):
    """Turn ranked visible (pks, distances) into Match rows for the page [offset, want).

    A result card shows an image's name and links by pk: Match.image is a
    sql.ResultImage holding just those; `names` comes from the visibility query,
    or is read here for an exact search.
    """
    page = list(zip(pks[offset:want].tolist(), dist[offset:want].tolist()))
    if names is None:
        names = dict(Image.objects.filter(pk__in=[pk for pk, _ in page]).values_list("pk", "original_name"))
    # A row deleted between the ranking and the fetch is skipped, not an error.
    return [
        Match(image=sql.ResultImage(pk, names[pk], gallery.pk), distance=max(d, 0.0), rank=offset + r + 1)
        for r, (pk, d) in enumerate(page)
        if pk in names
    ]


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
    if image.embedding_state != EmbeddingState.READY:
        return []
    vec = _indexed_vector(image)
    if vec is None:
        vec = image.vector
    if vec is None:
        return []
    return search_vector(
        user=user, gallery=image.gallery, vector=vec, k=k, offset=offset, max_distance=max_distance, exclude_id=image.pk
    )


def _indexed_vector(image):
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
        return index.stored_vector(build.ref, image.pk)
    except index.IndexUnavailable:
        return None


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
