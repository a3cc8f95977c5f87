"""Reads: what a person may see, and similarity search over the DB and the index."""

import logging
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db.models import Count, Q
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
    recent = gallery.images.filter(embedded_at__gte=timezone.now() - timedelta(seconds=window)).count()
    rate = recent / window
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


def search_vector(*, user, gallery, vector, k=None, offset=0, max_distance=None, exclude_id=None):
    """Return the nearest images of `gallery` to `vector` that `user` may see, nearest first.

    Candidates come from the gallery's Annoy index plus an exact scan of images
    embedded after it was built; every candidate is re-ranked by exact cosine
    distance on its stored vector, and rows that are deleted, rejected, of
    another embedding version or hidden from `user` are dropped.
    """
    k = k or settings.IMAGESEARCH_DEFAULT_K
    want = offset + k
    vector = np.asarray(vector, dtype=np.float32).reshape(embeddings.DIM)  # (512,)
    version = embeddings.version()
    base = Image.objects.searchable().visible_to(user).filter(gallery=gallery, embedding_version=version)
    if exclude_id is not None:
        base = base.exclude(pk=exclude_id)

    build = (
        IndexBuild.objects.filter(gallery=gallery, status=IndexBuild.Status.READY, embedding_version=version)
        .order_by("-version")
        .first()
    )
    candidates = None
    if build is not None and build.item_count:
        n = min(build.item_count, max(want * 3, want + 32))
        while True:
            try:
                found = index.query(gallery.pk, build.version, build.checksum, build.n_trees, vector, n)
            except index.IndexUnavailable as exc:
                logger.warning("index of gallery %s unusable (%s): exact search, rebuild queued", gallery.pk, exc)
                _queue_rebuild(gallery.pk)
                candidates = None
                break
            ids = [pk for pk, _ in found]
            candidates = set(base.filter(pk__in=ids).values_list("pk", flat=True))
            # Hidden or removed images may crowd the candidates out: ask for more.
            if len(candidates) >= want or n >= build.item_count:
                break
            n = min(build.item_count, n * 4)
    if candidates is None:
        qs = base
    else:
        fresh = base.filter(embedded_at__gt=build.snapshot_at - SNAPSHOT_MARGIN).values_list("pk", flat=True)
        qs = base.filter(pk__in=candidates | set(fresh))
    rows = list(qs.values_list("pk", "embedding"))
    if not rows:
        return []
    pks = np.array([pk for pk, _ in rows], dtype=np.int64)  # (C,)
    dist = 1.0 - _vectors([e for _, e in rows]) @ vector  # (C,) cosine distance
    order = np.lexsort((pks, dist))  # nearest first, ties by pk: stable across calls
    if max_distance is not None:
        order = order[dist[order] <= max_distance]
    order = order[offset:want]
    objs = Image.objects.in_bulk([int(pks[i]) for i in order])
    return [
        Match(image=objs[int(pks[i])], distance=float(max(dist[i], 0.0)), rank=offset + r + 1)
        for r, i in enumerate(order)
        if int(pks[i]) in objs
    ]


def similar_images(*, user, image, k=None, offset=0, max_distance=None):
    """Return the images of the same gallery nearest `image`, excluding itself."""
    vec = image.vector
    if vec is None or image.embedding_state != EmbeddingState.READY:
        return []
    return search_vector(
        user=user, gallery=image.gallery, vector=vec, k=k, offset=offset, max_distance=max_distance, exclude_id=image.pk
    )


def exact_search(*, gallery, vector, k):
    """Return the k nearest searchable image pks by brute force (for quality checks)."""
    rows = list(
        Image.objects.searchable()
        .filter(gallery=gallery, embedding_version=embeddings.version())
        .values_list("pk", "embedding")
    )
    if not rows:
        return []
    pks = np.array([pk for pk, _ in rows], dtype=np.int64)
    dist = 1.0 - _vectors([e for _, e in rows]) @ np.asarray(vector, dtype=np.float32)
    return [int(pks[i]) for i in np.lexsort((pks, dist))[:k]]


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
