"""Writes to images: uploads (one file or many, each succeeding or failing alone), deletion, and the embedding queue."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import FileField, QuerySet

from gallery import jobs
from gallery.embedding import imaging, pipeline
from gallery.models import EmbeddingState, Gallery, Image, ModerationState
from gallery.services.duplicates import HashLookup, LookAlike
from gallery.services.galleries import delete_files
from gallery.services.indexing import switch_ready
from gallery.services.moderation import images_autoflag

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


class UploadError(Exception):
    """An upload failed in a way the person should be told about."""


@dataclass
class UploadResult:
    name: str
    status: str  # "added" | "duplicate" | "rejected"
    message: str = ""
    image: Image | None = None
    looks_like: LookAlike | None = None  # an added file that looks like an image already in the gallery

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"name": self.name, "status": self.status, "message": self.message}
        if self.image is not None:
            data["id"] = self.image.pk
            data["url"] = self.image.get_absolute_url()
        if self.looks_like is not None:
            data["looks_like"] = self.looks_like.as_dict()
        return data


def clean_filename(name: str | None) -> str:
    """Return a display name: no directories, no control characters, at most 255 characters."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if len(name) > 255:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 250 - len(ext)] + dot + ext) if dot and len(ext) <= 10 else name[:255]
    return name or "unnamed"


def _too_large(name: str, size: int) -> UploadResult:
    limit = settings.IMAGESEARCH_MAX_UPLOAD_BYTES // (1024 * 1024)
    return UploadResult(name, "rejected", f"The file is too large ({size / 1048576:.1f} MB; the limit is {limit} MB).")


def image_create(
    *,
    gallery: Gallery,
    uploader: User | None,
    data: bytes,
    name: str | None,
    queue: bool = True,
    lookup: HashLookup | None = None,
) -> UploadResult:
    """Store one uploaded file as an image of `gallery` and queue its embedding
    (unless `queue` is false: a bulk import queues its images in batches).
    With a `lookup`, an added file that looks like an existing image says which
    (UploadResult.looks_like), and joins the lookup for the rest of the batch.

    Return an UploadResult; a bad file is a "rejected" result with a reason, never
    an exception. Raise UploadError only when storage fails (nothing is left behind).
    """
    name = clean_filename(name)
    if len(data) > settings.IMAGESEARCH_MAX_UPLOAD_BYTES:
        return _too_large(name, len(data))
    try:
        info = imaging.inspect(data, settings.IMAGESEARCH_MAX_PIXELS)
        thumb = imaging.thumbnail_jpeg(data)
        phash, phash_mirror = imaging.hashes_of(data)
    except imaging.InvalidImage as exc:
        return UploadResult(name, "rejected", str(exc))
    digest = hashlib.sha256(data).hexdigest()
    existing = Image.objects.filter(gallery=gallery, sha256=digest).first()
    if existing is not None:
        return UploadResult(name, "duplicate", f"Already in this gallery as “{existing.original_name}”.", existing)
    like = lookup.match(phash, phash_mirror) if lookup is not None else None

    image = Image(
        gallery=gallery,
        original_name=name,
        sha256=digest,
        width=info.width,
        height=info.height,
        byte_size=len(data),
        content_type=info.content_type,
        uploader=uploader,
        moderation_state=ModerationState.PENDING,
        phash=phash,
        phash_mirror=phash_mirror,
    )
    saved: list[str] = []
    try:
        _store(image, "file", f"upload.{info.extension}", data, saved)
        _store(image, "thumbnail", "thumb.jpg", thumb, saved)
        with transaction.atomic():
            image.save()
            if queue:
                jobs.queue_embedding([image.pk])
    except IntegrityError:
        delete_files(saved)
        existing = Image.objects.filter(gallery=gallery, sha256=digest).first()
        return UploadResult(name, "duplicate", "Already in this gallery (uploaded at the same moment).", existing)
    except Exception as exc:
        delete_files(saved)
        logger.exception("storing upload %s failed", name)
        raise UploadError(
            f"The file could not be stored ({type(exc).__name__}); nothing was saved. Try again."
        ) from exc
    if lookup is not None:
        lookup.add(image)
    return UploadResult(name, "added", like.message if like else "", image, like)


def _store(image: Image, field_name: str, filename: str, data: bytes, attempted: list[str]) -> None:
    """Save `data` as the file of `image.<field_name>` under a fresh name.

    The name is recorded in `attempted` before writing: a write that fails
    half-way (disk full) leaves a partial file that must be removed too.
    """
    field = cast(FileField, image._meta.get_field(field_name))  # "file" or "thumbnail"
    name = field.generate_filename(image, filename)
    attempted.append(name)
    stored = field.storage.save(name, ContentFile(data), max_length=field.max_length)
    if stored != name:
        attempted.append(stored)
    setattr(image, field_name, stored)


def images_upload(*, gallery: Gallery, uploader: User | None, files: Sequence[UploadedFile]) -> list[UploadResult]:
    """Store many uploaded files; each succeeds or fails alone. Return one UploadResult per file."""
    if len(files) > settings.IMAGESEARCH_MAX_FILES_PER_REQUEST:
        limit = settings.IMAGESEARCH_MAX_FILES_PER_REQUEST
        return [
            UploadResult(clean_filename(f.name), "rejected", f"Too many files in one upload (limit {limit}).")
            for f in files
        ]
    results: list[UploadResult] = []
    lookup = HashLookup(gallery)
    for upload in files:
        if upload.size > settings.IMAGESEARCH_MAX_UPLOAD_BYTES:
            # Not read into memory. An upload handler always sets the size (django-stubs types it as optional).
            results.append(_too_large(clean_filename(upload.name), upload.size))  # type: ignore[arg-type]
            continue
        data = upload.read()
        try:
            results.append(image_create(gallery=gallery, uploader=uploader, data=data, name=upload.name, lookup=lookup))
        except UploadError as exc:
            results.append(UploadResult(clean_filename(upload.name), "rejected", str(exc)))
    return results


def image_delete(*, image: Image) -> None:
    names = [n for n in (image.file.name, image.thumbnail.name) if n]
    gallery_id = image.gallery_id
    image.delete()
    Gallery.objects.filter(pk=gallery_id).mark_index_stale()
    transaction.on_commit(lambda: delete_files(names))


def images_retry(*, images: QuerySet[Image]) -> int:
    """Put failed images back in the queue. Return how many were retried."""
    ids = list(images.filter(embedding_state=EmbeddingState.FAILED).values_list("pk", flat=True))
    Image.objects.filter(pk__in=ids).update(
        embedding_state=EmbeddingState.PENDING, embedding_error="", claim_token=None
    )
    return images_queue_embedding(image_ids=ids)


def images_reembed(*, images: QuerySet[Image]) -> int:
    """Embed the given images again (e.g. after a model change). Return how many were queued."""
    ids = list(images.exclude(embedding_state=EmbeddingState.PROCESSING).values_list("pk", flat=True))
    Image.objects.filter(pk__in=ids).update(
        embedding_state=EmbeddingState.PENDING, embedding_error="", claim_token=None
    )
    return images_queue_embedding(image_ids=ids)


def images_queue_embedding(*, image_ids: Iterable[int]) -> int:
    """Queue pending images for embedding in task-sized batches, once the transaction commits. Return how many."""
    return jobs.queue_embedding(image_ids)


def images_embed(*, image_ids: Iterable[int]) -> int:
    """Embed the given images (those still pending); then mark their galleries' indexes stale and auto-flag them.

    Return the number of images made ready. Safe to run twice. Raise OSError on
    storage trouble (gallery.embedding.pipeline.embed).
    """
    image_ids = list(image_ids)
    done, claimed = pipeline.embed(image_ids)
    for gallery_id, pks in claimed.items():
        Gallery.objects.filter(pk=gallery_id).mark_index_stale()
        images_autoflag(gallery_id=gallery_id, image_ids=pks)
    # During a switch the same ids may name ready images waiting for their next vector.
    switched = pipeline.embed_next(image_ids)
    for gallery_id in set(switched) | set(claimed):
        if switch_ready(gallery_id=gallery_id):
            jobs.publish_rebuild(gallery_id)  # the flip; beat queues it too if this is lost
    return done


def images_reconcile(*, broker_idle: bool) -> list[int]:
    """Queue again the images lost to a killed worker or a broker outage (gallery.embedding.pipeline.reconcile)."""
    return pipeline.reconcile(broker_idle=broker_idle)


def images_delete(*, images: QuerySet[Image]) -> int:
    """Delete images with their stored files and thumbnails. Return how many were deleted."""
    n = 0
    with transaction.atomic():
        for image in images.order_by("pk"):
            image_delete(image=image)
            n += 1
    return n
