"""Moderation decisions, audited, and auto-flagging of look-alikes of rejected images."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from gallery import embedding, vectors
from gallery.models import EmbeddingState, Gallery, Image, ModerationEvent, ModerationState

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


def image_moderate(*, image: Image, actor: User, state: str, reason: str | None = "") -> Image:
    """Record a moderation decision (who, when, from what to what, why) and apply it.

    A rejected image leaves every result at once (results are filtered by the
    database) and the index at the next rebuild. Repeating the same decision
    with the same reason changes nothing and records nothing.
    """
    reason = (reason or "").strip()
    with transaction.atomic():
        locked = Image.objects.select_for_update().get(pk=image.pk)
        previous = locked.moderation_state
        if previous == state and locked.moderation_note == reason and locked.moderated_at is not None:
            image.refresh_from_db()
            return image
        Image.objects.filter(pk=image.pk).update(
            moderation_state=state, moderation_note=reason, moderated_by=actor, moderated_at=timezone.now()
        )
        ModerationEvent.objects.create(image=locked, actor=actor, from_state=previous, to_state=state, reason=reason)
        if ModerationState.REJECTED in (previous, state) and previous != state:
            Gallery.objects.filter(pk=locked.gallery_id).mark_index_stale()
        if state == ModerationState.REJECTED:
            # Pending look-alikes of what was just rejected wait for a moderator too.
            images_autoflag(gallery_id=locked.gallery_id)
    image.refresh_from_db()
    return image


def images_moderate(*, images: QuerySet[Image], actor: User, state: str, reason: str | None = "") -> int:
    """Apply one decision to many images, each recorded on its own. Return how many changed."""
    changed = 0
    for image in images.order_by("pk"):
        before = image.moderated_at
        if image_moderate(image=image, actor=actor, state=state, reason=reason).moderated_at != before:
            changed += 1
    return changed


def images_autoflag(*, gallery_id: int, image_ids: Iterable[int] | None = None) -> list[int]:
    """Flag pending images of the gallery lying within IMAGESEARCH_AUTOFLAG_DISTANCE
    (cosine) of one of its rejected images; `image_ids` limits the candidates.

    Return the ids flagged now. Off (returns []) when the setting is 0.
    """
    threshold = settings.IMAGESEARCH_AUTOFLAG_DISTANCE
    if threshold <= 0:
        return []
    gallery = Gallery.objects.filter(pk=gallery_id).first()
    if gallery is None:
        return []
    version = embedding.served_version(gallery)  # during a switch, the vectors search compares
    dim = embedding.dim_of(version)
    ready = Image.objects.filter(gallery_id=gallery_id, embedding_state=EmbeddingState.READY, embedding_version=version)
    # READY rows are embedded: their vector is never NULL.
    rejected = cast(
        "list[tuple[int, vectors.Blob]]",
        list(ready.filter(moderation_state=ModerationState.REJECTED).values_list("pk", "embedding")),
    )
    if not rejected:
        return []
    candidates = ready.filter(moderation_state=ModerationState.PENDING, flagged=False)
    if image_ids is not None:
        candidates = candidates.filter(pk__in=list(image_ids))
    rows = cast("list[tuple[int, vectors.Blob]]", list(candidates.order_by("pk").values_list("pk", "embedding")))
    if not rows:
        return []
    r_pks = np.array([pk for pk, _ in rejected], dtype=np.int64)  # (R,)
    r_vecs = vectors.matrix([e for _, e in rejected], dim)  # (R, D)
    flagged: list[tuple[int, int, float]] = []  # (pk, pk of the rejected match, distance)
    step = 1024  # bounds the (step, R) distance matrix
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        dist = vectors.cosine_distances(r_vecs, vectors.matrix([e for _, e in chunk], dim))  # (C, R)
        nearest = dist.argmin(axis=1)  # (C,)
        for row, (pk, _) in enumerate(chunk):
            d = float(max(dist[row, nearest[row]], 0.0))
            if d < threshold:
                flagged.append((pk, int(r_pks[nearest[row]]), d))
    if not flagged:
        return []
    matches = Image.objects.in_bulk([m for _, m, _ in flagged])
    done: list[int] = []
    with transaction.atomic():
        for pk, match_pk, d in flagged:
            match = matches[match_pk]
            reason = f"Cosine distance {d:.4f} to rejected image “{match.original_name}” (#{match.pk})"
            if match.moderation_note:
                reason += f", rejected for: {match.moderation_note}"
            n = Image.objects.filter(pk=pk, moderation_state=ModerationState.PENDING, flagged=False).update(
                flagged=True, flag_reason=reason, flag_match=match, flag_distance=d
            )
            if n:
                ModerationEvent.objects.create(
                    image_id=pk,
                    actor=None,
                    from_state=ModerationState.PENDING,
                    to_state=ModerationState.PENDING,
                    reason=f"Auto-flagged: {reason}.",
                )
                done.append(pk)
    if done:
        logger.info("gallery %s: auto-flagged %d image(s) resembling rejected ones", gallery_id, len(done))
    return done
