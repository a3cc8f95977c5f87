"""Copy probes: generated copies of a sample of a gallery's images, embedded, so its bands can be fitted.

The near-duplicate band needs to know how far this backbone moves a picture
of this gallery when it is re-encoded, cropped, mirrored... No gallery comes
with labelled copies, so the embed worker makes some: IMAGESEARCH_COPY_PROBES
images per gallery (and embedding version), six copies each
(imaging.copies). The next index build fits the bands to them.
"""

import logging

import numpy as np
from django.conf import settings
from django.db import IntegrityError
from django.db.models import Q

from gallery import embedding, vectors
from gallery.embedding import imaging
from gallery.models import CopyProbe, Gallery, Image
from gallery.search import bands

logger = logging.getLogger(__name__)


def probes_wanted(*, gallery_id: int) -> bool:
    """True when the gallery has fewer probed images of the current embedding version than it could have."""
    want = settings.IMAGESEARCH_COPY_PROBES
    if want <= 0:
        return False
    version = embedding.version()
    have = CopyProbe.objects.filter(gallery_id=gallery_id, embedding_version=version).values("image_id").distinct()
    probed = have.count()
    if probed >= want:
        return False
    return (
        Image.objects.searchable()
        .filter(gallery_id=gallery_id)
        .filter(Q(embedding_version=version) | Q(next_embedding_version=version))
        .exclude(pk__in=have)
        .exists()
    )


def gallery_probe_copies(*, gallery_id: int) -> int:
    """Embed generated copies of up to IMAGESEARCH_COPY_PROBES images of the gallery; return the probes written.

    Safe to run twice: images already probed for this embedding version are
    skipped, and a row written twice is ignored. An image whose file cannot be
    read or decoded is skipped (it is the embedding pipeline's business to
    report it). Marks the gallery's index stale when probes were written, so
    the next build refits its bands.
    """
    want = settings.IMAGESEARCH_COPY_PROBES
    version = embedding.version()
    probed = CopyProbe.objects.filter(gallery_id=gallery_id, embedding_version=version).values("image_id")
    room = want - probed.distinct().count()
    if room <= 0:
        return 0
    # sha256 order: a sample spread over the gallery, the same on every run.
    # During a switch the probes are of the active version, against the images' next vectors:
    # the flip's build fits its bands from them.
    candidates = (
        Image.objects.searchable()
        .filter(gallery_id=gallery_id)
        .filter(Q(embedding_version=version) | Q(next_embedding_version=version))
        .exclude(pk__in=probed)
        .order_by("sha256")[:room]
    )
    rows: list[CopyProbe] = []
    for image in candidates:
        try:
            with image.file.open("rb") as fh:
                data = fh.read()
            edited = imaging.copies(data, seed=image.pk)
            inputs = [imaging.model_input(b, embedding.input_size()) for _, b in edited]
            hashes = [imaging.hashes_of(b)[0] for _, b in edited]
            if image.phash is None:
                image.phash, image.phash_mirror = imaging.hashes_of(data)
                Image.objects.filter(pk=image.pk).update(phash=image.phash, phash_mirror=image.phash_mirror)
        except (OSError, imaging.InvalidImage, ValueError) as exc:
            logger.info("gallery %s: no copies of image %s (%s)", gallery_id, image.pk, exc)
            continue
        vecs = embedding.embed_batch(inputs)  # (6, D); WeightsUnavailable propagates: nothing written for it
        original = vectors.unpack(image.embedding if image.embedding_version == version else image.next_embedding)
        distances = 1.0 - vecs @ original  # (6,)
        hash_d = bands.hash_distances((image.phash, image.phash_mirror), np.asarray(hashes, dtype=np.int64))
        rows.extend(
            CopyProbe(
                gallery_id=gallery_id,
                image_id=image.pk,
                embedding_version=version,
                transform=name,
                vector=vectors.pack(vec),
                distance=float(d),
                hash_distance=int(h),
            )
            for (name, _), vec, d, h in zip(edited, vecs, distances, hash_d, strict=True)
        )
    try:
        CopyProbe.objects.bulk_create(rows, ignore_conflicts=True)
    except IntegrityError:  # the image (or gallery) was deleted meanwhile
        logger.info("gallery %s: an image went away while its copies were embedded", gallery_id)
        return 0
    if rows:
        Gallery.objects.filter(pk=gallery_id).mark_index_stale()
        logger.info("gallery %s: %d copy probe(s) of %d image(s)", gallery_id, len(rows), len(rows) // 6)
    return len(rows)


def gallery_probes(
    *, gallery_id: int, ids: np.ndarray, matrix: np.ndarray, version: str | None = None
) -> list[bands.Probe]:
    """Return the gallery's probes of `version` (default the active one) whose original is among `ids` ((N,) sorted)."""
    out: list[bands.Probe] = []
    rows = CopyProbe.objects.filter(
        gallery_id=gallery_id, embedding_version=version or embedding.version()
    ).values_list("image_id", "vector", "hash_distance")
    for image_id, blob, hash_distance in rows:
        at = int(np.searchsorted(ids, image_id))
        if at < len(ids) and ids[at] == image_id:
            out.append(bands.Probe(vectors.unpack(blob), matrix[at], int(hash_distance)))
    return out
