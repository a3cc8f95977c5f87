"""Search with several images of a gallery: positives ("more like these") and negatives ("less like those").

The query is one vector, Rocchio's relevance-feedback rule on unit vectors:

    q = mean(positives) - NEGATIVE_WEIGHT * mean(negatives), scaled to unit length

Why one vector rather than a fusion of per-image rankings: it is one search,
through exactly the path a single image takes (index candidates, the delta,
exact re-rank, visibility, bands, paging), so it costs one query whatever the
number of images, its pages never overlap, and its distances and bands mean
what they mean elsewhere. A rank fusion needs one deep search per image and
has no distance to band or threshold. The mean of unit vectors points at what
the positives share; subtracting part of the negatives' mean turns the query
away from what they show. NEGATIVE_WEIGHT below 1 keeps the positives in
charge: with 1, a single negative much like the positives would cancel them.
(Rocchio's own weights put negatives at 0.15..0.25 of positives for text;
image embeddings share a large common component, which the subtraction
removes too, so a larger share is needed to move the results at all:
tests/test_map.py checks that the negatives' neighbours drop out.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from django.conf import settings

from gallery import access
from gallery.models import EmbeddingState, Gallery, Image, ModerationState
from gallery.search import bands, engine

NEGATIVE_WEIGHT = 0.5


class QueryImagesError(ValueError):
    """The images named cannot be searched with; the message says which and why."""

    def __init__(self, message: str, ids: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.ids = list(ids)


def parse_ids(raw: str | Sequence[object] | None, *, name: str) -> list[int]:
    """Return the image ids of "1,2,3" or [1, 2, 3] in order, each once. Raise QueryImagesError on anything else."""
    if raw is None or raw == "":
        return []
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    ids: list[int] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        if isinstance(item, bool) or not text.isdigit():
            raise QueryImagesError(f"{name}: {text[:40]!r} is not an image id (give ids as 1,2,3).")
        value = int(text)
        if value not in ids:
            ids.append(value)
    return ids


def query_vector(
    positives: npt.NDArray[np.float32], negatives: npt.NDArray[np.float32] | None = None
) -> npt.NDArray[np.float32]:
    """The Rocchio query of (P, D) positive and (M, D) negative unit vectors: (D,) float32 of unit length."""
    q = np.asarray(positives, dtype=np.float64).mean(axis=0)  # (D,)
    if negatives is not None and len(negatives):
        q = q - NEGATIVE_WEIGHT * np.asarray(negatives, dtype=np.float64).mean(axis=0)
    norm = float(np.linalg.norm(q))
    if norm < 1e-9:
        # The positives cancel out (or the negatives cancel them): there is no direction to search.
        raise QueryImagesError("These images point in no common direction: choose fewer negatives or other positives.")
    return (q / norm).astype(np.float32)


def query_images(
    *, user: access.Viewer, gallery: Gallery, positives: Sequence[int], negatives: Sequence[int]
) -> tuple[list[Image], list[Image]]:
    """Return (positive images, negative images) as named, checked: in the gallery, visible to `user`, embedded.

    Raise QueryImagesError naming the offending ids: none positive, too many,
    one both positive and negative, ids not in the gallery or not visible (one
    message for both: a stranger cannot tell a hidden image from a missing
    one), or not embedded yet.
    """
    if not positives:
        raise QueryImagesError("Name at least one positive image (pos=1,2,3).")
    limit = settings.IMAGESEARCH_MAX_QUERY_IMAGES
    if len(positives) + len(negatives) > limit:
        raise QueryImagesError(
            f"Too many images: {len(positives) + len(negatives)} named, at most {limit} (IMAGESEARCH_MAX_QUERY_IMAGES)."
        )
    both = sorted(set(positives) & set(negatives))
    if both:
        raise QueryImagesError(f"Images both positive and negative: {_ids(both)}.", both)
    wanted = list(positives) + list(negatives)
    rows = {
        image.pk: image
        for image in Image.objects.filter(gallery=gallery, pk__in=wanted)
        .exclude(moderation_state=ModerationState.REJECTED)
        .defer("embedding")
    }
    for image in rows.values():
        image.gallery = gallery  # loaded once, for the visibility check and the vectors
    unknown = [pk for pk in wanted if pk not in rows or not access.can_see(rows[pk], user)]
    if unknown:
        raise QueryImagesError(f"Not images of this gallery that you may see: {_ids(unknown)}.", unknown)
    pending = [pk for pk in wanted if rows[pk].embedding_state != EmbeddingState.READY]
    if pending:
        raise QueryImagesError(f"Not processed yet (no embedding to search with): {_ids(pending)}.", pending)
    return [rows[pk] for pk in positives], [rows[pk] for pk in negatives]


def _ids(ids: Sequence[int]) -> str:
    return ", ".join(str(pk) for pk in ids)


def _vectors(images: Sequence[Image]) -> npt.NDArray[np.float32]:
    """(len, D) float32: each image's vector as the index holds it, else its row's."""
    out = []
    for image in images:
        vec = engine.indexed_vector(image)
        if vec is None:
            vec = Image.objects.get(pk=image.pk).vector  # deferred above: read only when the index lacks it
        if vec is None:
            raise QueryImagesError(f"Image {image.pk} has no embedding to search with.", [image.pk])
        out.append(np.asarray(vec, dtype=np.float32))
    return np.stack(out)


def similar_to_images(
    *,
    user: access.Viewer,
    gallery: Gallery,
    positives: Sequence[int],
    negatives: Sequence[int] = (),
    k: int | None = None,
    offset: int = 0,
    max_distance: float | None = None,
    band: str | None = None,
    counts: bool = False,
) -> engine.Results:
    """Return the images of `gallery` nearest the Rocchio query of `positives` less `negatives`, for `user`.

    The query images themselves are left out of the results; paging, bands
    and visibility are those of a single-image search (engine.search_results).
    Raise QueryImagesError when the ids cannot be searched with.
    """
    pos_images, neg_images = query_images(user=user, gallery=gallery, positives=positives, negatives=negatives)
    vector = query_vector(_vectors(pos_images), _vectors(neg_images) if neg_images else None)
    k = k or settings.IMAGESEARCH_DEFAULT_K
    excluded = {image.pk for image in pos_images} | {image.pk for image in neg_images}
    # One search for the whole prefix up to this page, the query images dropped,
    # then this page cut from it: ranks and pages then count only other images.
    # At least COUNT_DEPTH deep and unfiltered by band, so every excluded image
    # among the counted ones has its band known and is taken off the counts;
    # the band filter is applied here, as search_results applies it.
    depth = max(offset + k + len(excluded), engine.COUNT_DEPTH if counts or band else 0)
    found = engine.search_results(
        user=user,
        gallery=gallery,
        vector=vector,
        k=depth,
        offset=0,
        max_distance=max_distance,
        counts=counts,
    )

    def in_band(match: engine.Match) -> bool:
        return not band or not match.band or bands.RANK[match.band] <= bands.RANK[band]

    kept = [m for m in found.matches if m.image.pk not in excluded and in_band(m)]
    page = kept[offset : offset + k]
    for rank, match in enumerate(page, start=offset + 1):
        match.rank = rank
    counted = dict(found.counts)
    if counted:
        for match in found.matches:
            if match.image.pk in excluded and match.band:
                for key in bands.KEYS:
                    if bands.RANK[match.band] <= bands.RANK[key] and key in counted:
                        counted[key] -= 1
    return engine.Results(page, counted, found.saturated)
