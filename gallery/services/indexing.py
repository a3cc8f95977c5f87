"""Index builds: read a gallery's searchable vectors, build and publish a version, record it."""

import logging
import time
from datetime import datetime

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from gallery import embedding, vectors
from gallery.embedding import imaging
from gallery.models import Gallery, Image, IndexBuild
from gallery.search import bands, calibration, store
from gallery.services import probes

logger = logging.getLogger(__name__)


def _searchable_vectors(
    gallery_id: int, version_id: str, snapshot_at: datetime
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Return (ids (N,) int64 sorted, vectors (N, D) float32, hashes (N,) int64) embedded by `snapshot_at`.

    Rows stream in chunks into preallocated arrays: a million-image gallery
    needs its 2 GB of vectors once, not again as a list of bytes. An image
    without a perceptual hash gets imaging.NO_HASH.
    """
    dim = embedding.dim()
    rows = (
        Image.objects.searchable()
        .filter(gallery_id=gallery_id, embedding_version=version_id, embedded_at__lte=snapshot_at)
        .order_by("pk")
    )
    capacity = rows.count() + 1024  # room for rows committed between count and scan
    ids = np.empty(capacity, dtype=np.int64)  # (capacity,)
    matrix = np.empty((capacity, dim), dtype=np.float32)  # (capacity, D)
    hashes = np.empty(capacity, dtype=np.int64)  # (capacity,)
    n = 0
    for pk, emb, phash in rows.values_list("pk", "embedding", "phash").iterator(chunk_size=2000):
        if n == capacity:
            capacity *= 2
            ids = np.resize(ids, capacity)
            matrix = np.resize(matrix, (capacity, dim))
            hashes = np.resize(hashes, capacity)
        ids[n] = pk
        matrix[n] = vectors.unpack(emb)
        hashes[n] = imaging.NO_HASH if phash is None else phash
        n += 1
    return ids[:n], matrix[:n], hashes[:n]


def index_is_stale(*, gallery_id: int) -> bool:
    """True when the gallery exists and changed since its build, or has no ready build of the current embedding version."""
    gallery = Gallery.objects.filter(pk=gallery_id).only("index_dirty").first()
    if gallery is None:
        return False
    if gallery.index_dirty:
        return True
    return not IndexBuild.objects.filter(
        gallery_id=gallery_id, status=IndexBuild.Status.READY, embedding_version=embedding.version()
    ).exists()


def gallery_rebuild_index(*, gallery_id: int) -> IndexBuild | None:
    """Build the gallery's index from its searchable vectors of the current version.

    The caller holds the gallery's rebuild lock (gallery.locks). Return the
    IndexBuild, or None when the gallery is gone.
    """
    gallery = Gallery.objects.filter(pk=gallery_id).first()
    if gallery is None:
        return None
    started = time.monotonic()
    snapshot_at = timezone.now()
    # Clear the flag before reading: a change during the build sets it again.
    Gallery.objects.filter(pk=gallery_id).update(index_dirty=False, index_dirty_since=None)
    version_id = embedding.version()
    ids, matrix, hashes = _searchable_vectors(gallery_id, version_id, snapshot_at)
    last = gallery.index_builds.order_by("-version").first()
    version = (last.version + 1) if last else 1
    previous = gallery.current_build()
    try:
        built = store.build(gallery_id, version, ids, matrix, seed=settings.IMAGESEARCH_RANDOM_SEED, hashes=hashes)
        ref = store.Ref(gallery_id, version, built.checksum, built.n_trees, built.item_count)
        fit = calibration.calibrate(
            ref,
            ids,
            matrix,
            target=settings.IMAGESEARCH_TARGET_RECALL,
            seed=settings.IMAGESEARCH_RANDOM_SEED,
        )
        fitted = bands.fit(
            fit.pair_distances,
            store.read_whitening(gallery_id, version),
            probes.gallery_probes(gallery_id=gallery_id, ids=ids, matrix=matrix),
        )
    except Exception as exc:
        Gallery.objects.filter(pk=gallery_id).mark_index_stale()
        IndexBuild.objects.create(
            gallery=gallery,
            version=version,
            status=IndexBuild.Status.FAILED,
            embedding_version=version_id,
            snapshot_at=snapshot_at,
            duration_seconds=time.monotonic() - started,
            error=f"{type(exc).__name__}: {exc}",
        )
        raise
    logger.info(
        "gallery %s v%s: %s items, %s, recall@10 %s on %s queries (calibrated in %.1f s)",
        gallery_id,
        version,
        built.item_count,
        "exact" if fit.exact else f"pool {fit.pool} search_k {fit.search_k}",
        "n/a" if fit.recall is None else f"{fit.recall:.4f}",
        fit.queries,
        fit.seconds,
    )
    with transaction.atomic():
        IndexBuild.objects.filter(gallery=gallery, status=IndexBuild.Status.READY).update(
            status=IndexBuild.Status.SUPERSEDED
        )
        record = IndexBuild.objects.create(
            gallery=gallery,
            version=version,
            status=IndexBuild.Status.READY,
            embedding_version=version_id,
            item_count=built.item_count,
            n_trees=built.n_trees,
            checksum=built.checksum,
            size_bytes=built.size_bytes,
            snapshot_at=snapshot_at,
            duration_seconds=time.monotonic() - started,
            exact=fit.exact,
            search_k=fit.search_k,
            pool=fit.pool,
            recall=fit.recall,
            recall_queries=fit.queries,
            calibration_seconds=fit.seconds,
            bands=fitted,
        )
        Gallery.objects.filter(pk=gallery_id).update(current_index=record)
    # Keep the previous ready version too: a web process may still be reading it.
    store.remove_versions(gallery_id, keep={version, previous.version} if previous else {version})
    return record
