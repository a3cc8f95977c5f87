"""The trash: images moved out of a gallery, restorable for IMAGESEARCH_TRASH_DAYS, then purged with their files."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from gallery import embedding, jobs
from gallery.models import EmbeddingState, Gallery, Image, TrashedImage
from gallery.services.galleries import delete_files

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


def images_trash(
    *,
    images: Iterable[Image],
    actor: User | None,
    reason: str = "",
    reasons: Mapping[int, str] | None = None,
) -> list[TrashedImage]:
    """Move images to their gallery's trash: off every page and out of search now, files kept. Return the trash rows.

    `reasons` gives some images (by pk) their own reason instead of `reason`.
    """
    images = list(images)
    rows = [
        TrashedImage(
            gallery_id=image.gallery_id,
            original_id=image.pk,
            file=image.file.name or "",
            thumbnail=image.thumbnail.name or "",
            original_name=image.original_name,
            sha256=image.sha256,
            width=image.width,
            height=image.height,
            byte_size=image.byte_size,
            content_type=image.content_type,
            uploader_id=image.uploader_id,
            uploaded_at=image.created_at,
            moderation_state=image.moderation_state,
            moderation_note=image.moderation_note,
            embedding=image.embedding,
            embedding_version=image.embedding_version,
            phash=image.phash,
            phash_mirror=image.phash_mirror,
            trashed_by=actor,
            reason=(reasons or {}).get(image.pk, reason)[:200],
        )
        for image in images
    ]
    with transaction.atomic():
        trashed = TrashedImage.objects.bulk_create(rows, batch_size=500)
        # The rows go the way of every deletion: search drops them at once.
        Image.objects.filter(pk__in=[image.pk for image in images]).delete()
        for image in images:
            image.pk = None  # as Model.delete() leaves it
        Gallery.objects.filter(pk__in={image.gallery_id for image in images}).mark_index_stale()
    return trashed


@dataclass(frozen=True)
class Restored:
    item: TrashedImage
    image: Image | None  # None: not restored
    message: str = ""


def trash_restore(*, item: TrashedImage) -> Restored:
    """Put a trashed image back in its gallery (a new id); its embedding is reused when still current.

    Current means of the version the gallery serves: during a switch the image
    comes back searchable and is queued for its next vector (the trash keeps no
    next vector); a vector of any other version is embedded again. A picture
    uploaded again meanwhile stays as it is: the trash row is kept and the
    message says where the picture is.
    """
    gallery = Gallery.objects.get(pk=item.gallery_id)
    current = embedding.served_version(gallery)
    ready = item.embedding is not None and item.embedding_version == current
    switching = ready and current != embedding.version()
    image = Image(
        gallery_id=item.gallery_id,
        file=item.file,
        thumbnail=item.thumbnail,
        original_name=item.original_name,
        sha256=item.sha256,
        width=item.width,
        height=item.height,
        byte_size=item.byte_size,
        content_type=item.content_type,
        uploader_id=item.uploader_id,
        moderation_state=item.moderation_state,
        moderation_note=item.moderation_note,
        embedding=item.embedding if ready else None,
        embedding_version=current if ready else "",
        embedding_state=EmbeddingState.READY if ready else EmbeddingState.PENDING,
        embedded_at=timezone.now() if ready else None,
        phash=item.phash,
        phash_mirror=item.phash_mirror,
    )
    try:
        with transaction.atomic():
            image.save()
            Image.objects.filter(pk=image.pk).update(created_at=item.uploaded_at)  # back in its place in the grid
            item.delete()
            Gallery.objects.filter(pk=image.gallery_id).mark_index_stale()
            if not ready or switching:
                jobs.queue_embedding([image.pk])  # the embed task writes its next vector when only that is missing
    except IntegrityError:
        existing = Image.objects.filter(gallery_id=item.gallery_id, sha256=item.sha256).first()
        where = f"“{existing.original_name}”" if existing else "another image"
        return Restored(
            item, None, f"“{item.original_name}” is already in this gallery as {where}; it stays in the trash."
        )
    return Restored(item, image)


def trash_purge(*, items: QuerySet[TrashedImage]) -> int:
    """Delete trashed images for good, with their files (after the commit). Return how many."""
    with transaction.atomic():
        rows = list(items.values_list("pk", "file", "thumbnail"))
        names = [n for _pk, file, thumb in rows for n in (file, thumb) if n]
        TrashedImage.objects.filter(pk__in=[pk for pk, _f, _t in rows]).delete()
        transaction.on_commit(lambda: delete_files(names))
    return len(rows)


def trash_purge_expired(*, now: datetime | None = None) -> int:
    """Purge what has been in any trash longer than IMAGESEARCH_TRASH_DAYS (run by beat). Return how many."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.IMAGESEARCH_TRASH_DAYS)
    return trash_purge(items=TrashedImage.objects.filter(trashed_at__lt=cutoff))


def trash_expires_at(item: TrashedImage) -> datetime:
    return item.trashed_at + timedelta(days=settings.IMAGESEARCH_TRASH_DAYS)
