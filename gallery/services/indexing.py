"""Index builds: read a gallery's searchable vectors, build and publish a version, record it.

A gallery serves the embedding version of its current build. After a switch of
backbone the workers fill Image.next_embedding with the active version; once
every searchable image has a vector of it (switch_coverage) the rebuild builds
the active version's index from those vectors beside the served files and, in
one transaction, moves next -> embedding and makes the new build current.
Until then rebuilds keep serving the previous version: search never empties.
"""

import logging
import time
from datetime import datetime

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.db import transaction
from django.db.models import BinaryField, Case, F, Q, When
from django.utils import timezone

from gallery import embedding, vectors
from gallery.embedding import imaging
from gallery.embedding.pipeline import switch_coverage
from gallery.models import Gallery, Image, IndexBuild
from gallery.search import bands, calibration, store
from gallery.services import probes

logger = logging.getLogger(__name__)


def _searchable_vectors(
    gallery_id: int, version_id: str, snapshot_at: datetime, *, flip: bool = False
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Return (ids (N,) int64 sorted, vectors (N, D) float32, hashes (N,) int64) embedded by `snapshot_at`.

    Rows stream in chunks into preallocated arrays: a million-image gallery
    needs its 2 GB of vectors once, not again as a list of bytes. An image
    without a perceptual hash gets imaging.NO_HASH. With `flip`, an image's
    next vector stands in for its served one when the next is of `version_id`.
    """
    dim = embedding.dim_of(version_id)
    searchable = Image.objects.searchable().filter(gallery_id=gallery_id)
    if flip:
        served = Q(embedding_version=version_id, embedded_at__lte=snapshot_at)
        rows = searchable.filter(served | Q(next_embedding_version=version_id)).order_by("pk")
        pairs = rows.annotate(
            vec=Case(When(served, then=F("embedding")), default=F("next_embedding"), output_field=BinaryField())
        ).values_list("pk", "vec", "phash")
    else:
        rows = searchable.filter(embedding_version=version_id, embedded_at__lte=snapshot_at).order_by("pk")
        pairs = rows.values_list("pk", "embedding", "phash")
    capacity = rows.count() + 1024  # room for rows committed between count and scan
    ids = np.empty(capacity, dtype=np.int64)  # (capacity,)
    matrix = np.empty((capacity, dim), dtype=np.float32)  # (capacity, D)
    hashes = np.empty(capacity, dtype=np.int64)  # (capacity,)
    n = 0
    for pk, emb, phash in pairs.iterator(chunk_size=2000):
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


def switch_ready(*, gallery_id: int) -> bool:
    """True when the gallery serves another version than the active one and every searchable image has a next vector."""
    gallery = Gallery.objects.filter(pk=gallery_id).first()
    if gallery is None or embedding.served_version(gallery) == embedding.version():
        return False
    coverage = switch_coverage(gallery=gallery)
    return coverage.switching and coverage.complete


def index_is_stale(*, gallery_id: int) -> bool:
    """True when the gallery exists and changed since its build, or its switch to the active version can flip."""
    gallery = Gallery.objects.filter(pk=gallery_id).first()
    if gallery is None:
        return False
    if gallery.index_dirty:
        return True
    if gallery.current_build() is None:
        return True
    return switch_ready(gallery_id=gallery_id)


def galleries_ready_to_switch() -> list[int]:
    """Ids of the galleries whose switch to the active version can flip now (beat queues their rebuild)."""
    active = embedding.version()
    switching = Gallery.objects.filter(current_index__isnull=False).exclude(current_index__embedding_version=active)
    return [pk for pk in switching.values_list("pk", flat=True) if switch_ready(gallery_id=pk)]


def gallery_rebuild_index(*, gallery_id: int) -> IndexBuild | None:
    """Build the gallery's index from its searchable vectors of the version it serves, or flip it.

    During a switch, until every searchable image has a next vector of the
    active version, the build is of the served version (search keeps its
    results); once all have one, the build is of the active version from those
    next vectors, and its commit moves them into `embedding`. The caller holds
    the gallery's rebuild lock (gallery.locks). Return the IndexBuild, or None
    when the gallery is gone.
    """
    gallery = Gallery.objects.filter(pk=gallery_id).first()
    if gallery is None:
        return None
    started = time.monotonic()
    snapshot_at = timezone.now()
    # Clear the flag before reading: a change during the build sets it again.
    Gallery.objects.filter(pk=gallery_id).update(index_dirty=False, index_dirty_since=None)
    coverage = switch_coverage(gallery=gallery)
    flip = coverage.switching and coverage.complete
    version_id = coverage.target if flip else coverage.served
    ids, matrix, hashes = _searchable_vectors(gallery_id, version_id, snapshot_at, flip=flip)
    last = gallery.index_builds.order_by("-version").first()
    version = (last.version + 1) if last else 1
    previous = gallery.current_build()
    try:
        built = store.build(gallery_id, version, ids, matrix, seed=settings.IMAGESEARCH_RANDOM_SEED, hashes=hashes)
        ref = store.Ref(
            gallery_id, version, built.checksum, built.n_trees, built.item_count, dim=embedding.dim_of(version_id)
        )
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
            probes.gallery_probes(gallery_id=gallery_id, ids=ids, matrix=matrix, version=version_id),
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
        if flip:
            _move_next_vectors(gallery_id, version_id, ids, snapshot_at)
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
    if flip:
        logger.info(
            "gallery %s switched from %s to %s: index v%s of %s items",
            gallery_id,
            coverage.served,
            version_id,
            version,
            built.item_count,
        )
    # Keep the previous ready version too: a web process may still be reading it.
    store.remove_versions(gallery_id, keep={version, previous.version} if previous else {version})
    return record


def _move_next_vectors(gallery_id: int, version_id: str, ids: npt.NDArray[np.int64], snapshot_at: datetime) -> None:
    """Inside the flip's transaction: next -> embedding for the gallery's images whose next vector is `version_id`.

    The images the new build holds are dated at its snapshot (their vectors are
    in its files); any other (embedded after the snapshot read) is dated now, so
    search finds it in the new build's delta, and the gallery is marked stale.
    """
    built = set(ids.tolist())
    rows = list(
        Image.objects.filter(gallery_id=gallery_id, next_embedding_version=version_id).values_list("pk", flat=True)
    )
    inside = [pk for pk in rows if pk in built]
    outside = [pk for pk in rows if pk not in built]
    moved = {
        "embedding": F("next_embedding"),
        "embedding_version": version_id,
        "next_embedding": None,
        "next_embedding_version": "",
    }
    step = 500
    for start in range(0, len(inside), step):
        Image.objects.filter(pk__in=inside[start : start + step], next_embedding_version=version_id).update(
            embedded_at=snapshot_at, **moved
        )
    if outside:
        Image.objects.filter(pk__in=outside, next_embedding_version=version_id).update(
            embedded_at=timezone.now(), **moved
        )
        Gallery.objects.filter(pk=gallery_id).mark_index_stale()
