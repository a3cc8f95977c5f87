"""Synthetic galleries for search unit tests: clustered unit vectors written
straight into Image rows (bulk_create), so search logic is tested with exactly
known geometry. Integration tests embed real images instead."""

from datetime import timedelta

import numpy as np
from django.utils import timezone

from gallery import embedding, services
from gallery.models import EmbeddingState, Gallery, Image, ModerationState
from gallery.vectors import pack

DIM = 512


def clustered(n, seed=0, per_cluster=100, spread=1.0):
    """Return (n, 512) float32 unit vectors in n/per_cluster Gaussian clusters."""
    rng = np.random.default_rng(seed)
    n_clusters = max(2, n // per_cluster)
    centers = rng.standard_normal((n_clusters, DIM)).astype(np.float32)  # (C, 512)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    labels = rng.integers(0, n_clusters, n)  # (n,)
    x = centers[labels] + spread * rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(DIM)  # (n, 512)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def add_images(gallery, vectors, *, embedded_ago=timedelta(hours=1), moderation=ModerationState.APPROVED, prefix="v"):
    """Create one ready Image per row of `vectors`; return them in row order."""
    version = embedding.version()
    at = timezone.now() - embedded_ago
    start = Image.objects.filter(gallery=gallery).count()
    rows = [
        Image(
            gallery=gallery,
            file=f"images/{gallery.pk}/{prefix}{start + i}.jpg",
            original_name=f"{prefix}{start + i}.jpg",
            sha256=f"{gallery.pk}-{prefix}-{start + i}",
            width=224,
            height=224,
            byte_size=1000,
            content_type="image/jpeg",
            embedding_state=EmbeddingState.READY,
            embedding=pack(vec),
            embedding_version=version,
            embedded_at=at,
            moderation_state=moderation,
        )
        for i, vec in enumerate(np.asarray(vectors, dtype=np.float32))
    ]
    created = Image.objects.bulk_create(rows, batch_size=2000)
    if created and created[0].pk is None:  # backends without RETURNING
        created = list(Image.objects.filter(gallery=gallery, original_name__startswith=prefix).order_by("pk"))[
            -len(rows) :
        ]
    return created


def indexed_gallery(owner, slug, n=500, seed=4, per_cluster=50):
    """A gallery of `n` clustered ready images with a built index and no rebuild pending.

    Returns (gallery, images, vectors, build).
    """
    gallery = Gallery.objects.create(owner=owner, title=slug.title(), slug=slug)
    vecs = clustered(n, seed=seed, per_cluster=per_cluster)
    images = add_images(gallery, vecs)
    build = services.gallery_rebuild_index(gallery_id=gallery.pk)
    Gallery.objects.filter(pk=gallery.pk).update(index_dirty=False)
    return gallery, images, vecs, build
