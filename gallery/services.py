"""Writes: everything that changes galleries and images, or queues work.

Functions are keyword-only and named <entity>_<action>. Work for the workers is
queued on commit, so a worker never sees a row that was rolled back.
"""

import hashlib
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.text import slugify

from gallery import embeddings, imaging, index
from gallery.models import (
    EmbeddingState,
    Gallery,
    Image,
    IndexBuild,
    ModerationEvent,
    ModerationState,
    SystemNotice,
)

logger = logging.getLogger(__name__)

WEIGHTS_NOTICE = "embedding-weights"


class UploadError(Exception):
    """An upload failed in a way the person should be told about."""


# --- Galleries --------------------------------------------------------------


def _unique_slug(title, exclude_pk=None):
    base = slugify(title)[:60] or "gallery"
    slug, n = base, 2
    while Gallery.objects.filter(slug=slug).exclude(pk=exclude_pk).exists():
        slug = f"{base}-{n}"
        n += 1
    return slug


def gallery_create(*, owner, title, description="", visibility="private"):
    return Gallery.objects.create(
        owner=owner, title=title, slug=_unique_slug(title), description=description, visibility=visibility
    )


def gallery_update(*, gallery, title, description, visibility):
    gallery.title = title
    gallery.description = description
    gallery.visibility = visibility
    gallery.save(update_fields=["title", "description", "visibility", "updated_at"])
    return gallery


def gallery_delete(*, gallery):
    names = [n for pair in gallery.images.values_list("file", "thumbnail") for n in pair if n]
    gallery_id = gallery.pk
    gallery.delete()
    transaction.on_commit(lambda: _delete_files(names))
    transaction.on_commit(lambda: index.remove_gallery(gallery_id))


def gallery_mark_dirty(*, gallery_id):
    """Note that the gallery's index is out of date; beat rebuilds it once."""
    Gallery.objects.filter(pk=gallery_id, index_dirty=False).update(index_dirty=True, index_dirty_since=timezone.now())


def gallery_rebuild_request(*, gallery_id):
    """Ask for a rebuild of the gallery's index now (e.g. from the admin).

    The gallery is marked dirty first, so if the broker cannot be reached the
    periodic task still rebuilds it.
    """
    Gallery.objects.filter(pk=gallery_id).update(index_dirty=True, index_dirty_since=timezone.now())

    def enqueue():
        from gallery import tasks

        try:
            tasks.rebuild_index.delay(gallery_id)
        except Exception:  # broker down: beat rebuilds dirty galleries once it is back
            logger.warning("could not queue a rebuild of gallery %s; it stays marked stale", gallery_id, exc_info=True)

    transaction.on_commit(enqueue)


def _delete_files(names):
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("could not delete %s from storage", name, exc_info=True)


# --- Uploads ----------------------------------------------------------------


@dataclass
class UploadResult:
    name: str
    status: str  # "added" | "duplicate" | "rejected"
    message: str = ""
    image: Image | None = None

    def as_dict(self):
        data = {"name": self.name, "status": self.status, "message": self.message}
        if self.image is not None:
            data["id"] = self.image.pk
            data["url"] = self.image.get_absolute_url()
        return data


def clean_filename(name):
    """Return a display name: no directories, no control characters, at most 255 characters."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if len(name) > 255:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 250 - len(ext)] + dot + ext) if dot and len(ext) <= 10 else name[:255]
    return name or "unnamed"


def image_create(*, gallery, uploader, data, name, queue=True):
    """Store one uploaded file as an image of `gallery` and queue its embedding
    (unless `queue` is false: a bulk import queues its images in batches).

    Return an UploadResult; a bad file is a "rejected" result with a reason, never
    an exception. Raise UploadError only when storage fails (nothing is left behind).
    """
    name = clean_filename(name)
    if len(data) > settings.IMAGESEARCH_MAX_UPLOAD_BYTES:
        limit = settings.IMAGESEARCH_MAX_UPLOAD_BYTES // (1024 * 1024)
        return UploadResult(name, "rejected", f"The file is too large ({len(data) / 1048576:.1f} MB; the limit is {limit} MB).")
    try:
        info = imaging.inspect(data, settings.IMAGESEARCH_MAX_PIXELS)
        thumb = imaging.thumbnail_jpeg(data)
    except imaging.InvalidImage as exc:
        return UploadResult(name, "rejected", str(exc))
    digest = hashlib.sha256(data).hexdigest()
    existing = Image.objects.filter(gallery=gallery, sha256=digest).first()
    if existing is not None:
        return UploadResult(name, "duplicate", f"Already in this gallery as “{existing.original_name}”.", existing)

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
    )
    saved = []
    try:
        _store(image, "file", f"upload.{info.extension}", data, saved)
        _store(image, "thumbnail", "thumb.jpg", thumb, saved)
        with transaction.atomic():
            image.save()
            if queue:
                transaction.on_commit(lambda pk=image.pk: _enqueue_embedding([pk]))
    except IntegrityError:
        _delete_files(saved)
        existing = Image.objects.filter(gallery=gallery, sha256=digest).first()
        return UploadResult(name, "duplicate", "Already in this gallery (uploaded at the same moment).", existing)
    except Exception as exc:
        _delete_files(saved)
        logger.exception("storing upload %s failed", name)
        raise UploadError(f"The file could not be stored ({type(exc).__name__}); nothing was saved. Try again.") from exc
    return UploadResult(name, "added", "", image)


def _store(image, field_name, filename, data, attempted):
    """Save `data` as the file of `image.<field_name>` under a fresh name.

    The name is recorded in `attempted` before writing: a write that fails
    half-way (disk full) leaves a partial file that must be removed too.
    """
    field = image._meta.get_field(field_name)
    name = field.generate_filename(image, filename)
    attempted.append(name)
    stored = field.storage.save(name, ContentFile(data), max_length=field.max_length)
    if stored != name:
        attempted.append(stored)
    setattr(image, field_name, stored)


def images_upload(*, gallery, uploader, files):
    """Store many uploaded files; each succeeds or fails alone. Return one UploadResult per file."""
    if len(files) > settings.IMAGESEARCH_MAX_FILES_PER_REQUEST:
        limit = settings.IMAGESEARCH_MAX_FILES_PER_REQUEST
        return [UploadResult(clean_filename(f.name), "rejected", f"Too many files in one upload (limit {limit}).") for f in files]
    results = []
    for upload in files:
        if upload.size > settings.IMAGESEARCH_MAX_UPLOAD_BYTES:
            limit = settings.IMAGESEARCH_MAX_UPLOAD_BYTES // (1024 * 1024)
            results.append(
                UploadResult(
                    clean_filename(upload.name),
                    "rejected",
                    f"The file is too large ({upload.size / 1048576:.1f} MB; the limit is {limit} MB).",
                )
            )
            continue
        data = upload.read()
        try:
            results.append(image_create(gallery=gallery, uploader=uploader, data=data, name=upload.name))
        except UploadError as exc:
            results.append(UploadResult(clean_filename(upload.name), "rejected", str(exc)))
    return results


# After a failed publish, this process skips the broker for a few seconds: a
# 100-file upload during an outage must not wait for 100 connection timeouts.
# Nothing is lost: the images stay pending and the reconciler queues them.
BROKER_BACKOFF_SECONDS = 5.0
_broker_down_until = 0.0


def _enqueue_embedding(image_ids):
    global _broker_down_until
    from gallery import tasks

    if time.monotonic() < _broker_down_until:
        logger.info("broker recently unreachable: %d image(s) left pending for the reconciler", len(image_ids))
        return
    try:
        tasks.embed_images.delay(list(image_ids))
    except Exception:  # broker down: the images wait in pending; the reconciler queues them later
        _broker_down_until = time.monotonic() + BROKER_BACKOFF_SECONDS
        logger.warning("could not queue embedding of %d image(s); they stay pending", len(image_ids), exc_info=True)


def image_delete(*, image):
    names = [n for n in (image.file.name, image.thumbnail.name) if n]
    gallery_id = image.gallery_id
    image.delete()
    gallery_mark_dirty(gallery_id=gallery_id)
    transaction.on_commit(lambda: _delete_files(names))


def images_retry(*, images):
    """Put failed images back in the queue. Return how many were retried."""
    ids = list(images.filter(embedding_state=EmbeddingState.FAILED).values_list("pk", flat=True))
    Image.objects.filter(pk__in=ids).update(embedding_state=EmbeddingState.PENDING, embedding_error="", claim_token=None)
    return images_queue_embedding(image_ids=ids)


def images_reembed(*, images):
    """Embed the given images again (e.g. after a model change). Return how many were queued."""
    ids = list(images.exclude(embedding_state=EmbeddingState.PROCESSING).values_list("pk", flat=True))
    Image.objects.filter(pk__in=ids).update(embedding_state=EmbeddingState.PENDING, embedding_error="", claim_token=None)
    return images_queue_embedding(image_ids=ids)


def images_queue_embedding(*, image_ids):
    """Queue pending images for embedding in task-sized batches, once the transaction commits."""
    ids = list(image_ids)
    transaction.on_commit(lambda: _enqueue_in_batches(ids))
    return len(ids)


def _enqueue_in_batches(ids):
    step = _task_size()
    for start in range(0, len(ids), step):
        _enqueue_embedding(ids[start : start + step])


# --- Moderation -------------------------------------------------------------


def image_moderate(*, image, actor, state, reason=""):
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
            gallery_mark_dirty(gallery_id=locked.gallery_id)
        if state == ModerationState.REJECTED:
            # Pending look-alikes of what was just rejected wait for a moderator too.
            images_autoflag(gallery_id=locked.gallery_id)
    image.refresh_from_db()
    return image


def images_moderate(*, images, actor, state, reason=""):
    """Apply one decision to many images, each recorded on its own. Return how many changed."""
    changed = 0
    for image in images.order_by("pk"):
        before = image.moderated_at
        if image_moderate(image=image, actor=actor, state=state, reason=reason).moderated_at != before:
            changed += 1
    return changed


def images_delete(*, images):
    """Delete images with their stored files and thumbnails. Return how many were deleted."""
    n = 0
    with transaction.atomic():
        for image in images.order_by("pk"):
            image_delete(image=image)
            n += 1
    return n


def images_autoflag(*, gallery_id, image_ids=None):
    """Flag pending images of the gallery lying within IMAGESEARCH_AUTOFLAG_DISTANCE
    (cosine) of one of its rejected images; `image_ids` limits the candidates.

    Return the ids flagged now. Off (returns []) when the setting is 0.
    """
    import numpy as np

    threshold = settings.IMAGESEARCH_AUTOFLAG_DISTANCE
    if threshold <= 0:
        return []
    version = embeddings.version()
    ready = Image.objects.filter(gallery_id=gallery_id, embedding_state=EmbeddingState.READY, embedding_version=version)
    rejected = list(ready.filter(moderation_state=ModerationState.REJECTED).values_list("pk", "embedding"))
    if not rejected:
        return []
    candidates = ready.filter(moderation_state=ModerationState.PENDING, flagged=False)
    if image_ids is not None:
        candidates = candidates.filter(pk__in=list(image_ids))
    candidates = list(candidates.order_by("pk").values_list("pk", "embedding"))
    if not candidates:
        return []
    r_pks = np.array([pk for pk, _ in rejected], dtype=np.int64)  # (R,)
    r_vecs = np.frombuffer(b"".join(bytes(e) for _, e in rejected), dtype="<f4").reshape(len(rejected), index.DIM)
    flagged = []
    step = 1024  # bounds the (step, R) distance matrix
    for start in range(0, len(candidates), step):
        chunk = candidates[start : start + step]
        c_vecs = np.frombuffer(b"".join(bytes(e) for _, e in chunk), dtype="<f4").reshape(len(chunk), index.DIM)
        dist = 1.0 - c_vecs @ r_vecs.T  # (C, R) cosine distance: vectors are unit length
        nearest = dist.argmin(axis=1)  # (C,)
        for row, (pk, _) in enumerate(chunk):
            d = float(max(dist[row, nearest[row]], 0.0))
            if d < threshold:
                flagged.append((pk, int(r_pks[nearest[row]]), d))
    if not flagged:
        return []
    matches = Image.objects.in_bulk([m for _, m, _ in flagged])
    done = []
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
                    image_id=pk, actor=None, from_state=ModerationState.PENDING, to_state=ModerationState.PENDING,
                    reason=f"Auto-flagged: {reason}.",
                )
                done.append(pk)
    if done:
        logger.info("gallery %s: auto-flagged %d image(s) resembling rejected ones", gallery_id, len(done))
    return done


# --- Embedding (worker side) ------------------------------------------------


def _task_size():
    """Images per embed task: a few model batches, so decoding overlaps inference."""
    return settings.IMAGESEARCH_EMBED_BATCH_SIZE * 4


def _claim(image_ids, fill_to=0):
    """Claim pending images (or ones whose previous claim is stale) by conditional UPDATE.

    Return (token, claimed images). Only rows this call switched carry `token`,
    so two deliveries of one task never both get an image. With `fill_to`, other
    pending images of the same galleries are claimed too, up to that many: uploads
    queue one task per image, and the model is several times faster on a batch.
    """
    token = uuid.uuid4()
    now = timezone.now()
    stale = now - timedelta(seconds=settings.IMAGESEARCH_STUCK_AFTER_SECONDS)
    claimable = Q(embedding_state=EmbeddingState.PENDING) | Q(
        embedding_state=EmbeddingState.PROCESSING, claimed_at__lt=stale
    )
    claim = dict(
        embedding_state=EmbeddingState.PROCESSING, claim_token=token, claimed_at=now, attempts=F("attempts") + 1
    )
    n = Image.objects.filter(pk__in=image_ids).filter(claimable).update(**claim)
    if 0 < n < fill_to:
        galleries = Image.objects.filter(claim_token=token).values("gallery_id")
        more = list(
            Image.objects.filter(gallery_id__in=galleries, embedding_state=EmbeddingState.PENDING)
            .order_by("pk")
            .values_list("pk", flat=True)[: fill_to - n]
        )
        # Conditional again: another worker may have claimed some of these meanwhile.
        Image.objects.filter(pk__in=more, embedding_state=EmbeddingState.PENDING).update(**claim)
    return token, list(Image.objects.filter(claim_token=token).order_by("pk"))


def _release(token, ids=None):
    qs = Image.objects.filter(claim_token=token, embedding_state=EmbeddingState.PROCESSING)
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    qs.update(embedding_state=EmbeddingState.PENDING, claim_token=None, claimed_at=None)


def _touch(token):
    """Renew a claim, so a long task's images are not taken for lost by the reconciler."""
    Image.objects.filter(claim_token=token, embedding_state=EmbeddingState.PROCESSING).update(claimed_at=timezone.now())


def _decode(image):
    """Return (224, 224, 3) float32 or an InvalidImage; OSError means storage trouble."""
    try:
        with image.file.open("rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        # Gone for good (deleted behind our back): retrying cannot help.
        return imaging.InvalidImage("The stored file is missing; upload the image again.")
    try:
        return imaging.model_input(data)
    except imaging.InvalidImage as exc:
        return exc
    except Exception as exc:  # Pillow raises many types for damaged data
        return imaging.InvalidImage(f"The image could not be decoded ({type(exc).__name__}: {exc}).")


def images_embed(*, image_ids):
    """Embed the given images, batch by batch. Safe to run twice: only claimed rows are written.

    Return the number of images made ready. Raise OSError on storage trouble (the
    claim is released first, so a retry finds the images pending again).
    """
    token, images = _claim(image_ids, fill_to=_task_size())
    if not images:
        return 0
    version = embeddings.version()
    batch = settings.IMAGESEARCH_EMBED_BATCH_SIZE
    chunks = [images[i : i + batch] for i in range(0, len(images), batch)]
    done = 0
    paused = False
    # Decode the next chunk on a thread while the model runs the current one
    # (Pillow and TensorFlow both release the GIL).
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = pool.map(_decode, chunks[0])
        for i, chunk in enumerate(chunks):
            try:
                decoded = list(pending)
            except BaseException:  # storage trouble: pending again at once, and the task retries
                _release(token)
                raise
            if i + 1 < len(chunks):
                pending = pool.map(_decode, chunks[i + 1])
            good = [(img, arr) for img, arr in zip(chunk, decoded) if not isinstance(arr, Exception)]
            for img, err in zip(chunk, decoded):
                if isinstance(err, Exception):
                    Image.objects.filter(pk=img.pk, claim_token=token).update(
                        embedding_state=EmbeddingState.FAILED, embedding_error=str(err), claim_token=None
                    )
            if not good:
                continue
            try:
                vectors = embeddings.embed_batch([arr for _, arr in good])  # (b, 512)
            except embeddings.WeightsUnavailable as exc:
                _release(token)
                SystemNotice.objects.update_or_create(key=WEIGHTS_NOTICE, defaults={"message": str(exc)})
                logger.error("embedding paused, images stay pending: %s", exc)
                paused = True
                break
            except BaseException:
                _release(token)  # pending again at once, not after the stuck timeout
                raise
            now = timezone.now()
            written = []
            with transaction.atomic():
                for (img, _), vec in zip(good, vectors):
                    # The token check makes a redelivered or stale task write nothing.
                    if Image.objects.filter(pk=img.pk, claim_token=token).update(
                        embedding=Image.pack_vector(vec),
                        embedding_version=version,
                        embedding_state=EmbeddingState.READY,
                        embedding_error="",
                        embedded_at=now,
                        claim_token=None,
                    ):
                        written.append(img.pk)
            done += len(written)
            # One line per batch, after the commit: operators (and the crash test) count writes from it.
            logger.info("stored %d vector(s): ids %s", len(written), ",".join(map(str, written)))
            if i + 1 < len(chunks):
                _touch(token)
    if not paused:
        SystemNotice.objects.filter(key=WEIGHTS_NOTICE).delete()
    for gallery_id in {img.gallery_id for img in images}:
        gallery_mark_dirty(gallery_id=gallery_id)
        images_autoflag(gallery_id=gallery_id, image_ids=[img.pk for img in images if img.gallery_id == gallery_id])
    return done


def images_reconcile(*, broker_idle):
    """Find work that was lost (a killed worker, a broker outage) and queue it again.

    Images claimed longer than IMAGESEARCH_STUCK_AFTER_SECONDS go back to pending.
    Pending images are queued again only when the broker's embed queue is empty
    (`broker_idle`), so a long import is not queued twice. Return the ids queued.
    """
    stale = timezone.now() - timedelta(seconds=settings.IMAGESEARCH_STUCK_AFTER_SECONDS)
    Image.objects.filter(embedding_state=EmbeddingState.PROCESSING, claimed_at__lt=stale).update(
        embedding_state=EmbeddingState.PENDING, claim_token=None, claimed_at=None
    )
    # Vectors of another model version are embedded again in the background.
    Image.objects.filter(embedding_state=EmbeddingState.READY).exclude(embedding_version=embeddings.version()).update(
        embedding_state=EmbeddingState.PENDING, claim_token=None
    )
    if not broker_idle:
        return []
    ids = list(Image.objects.filter(embedding_state=EmbeddingState.PENDING).order_by("pk").values_list("pk", flat=True))
    _enqueue_in_batches(ids)
    return ids


# --- Index ------------------------------------------------------------------


def _searchable_vectors(gallery_id, version_id, snapshot_at):
    """Return (ids (N,) int64 sorted, vectors (N, 512) float32) embedded by `snapshot_at`.

    Rows stream in chunks into one preallocated array: a million-image gallery
    needs its 2 GB of vectors once, not again as a list of bytes.
    """
    import numpy as np

    rows = (
        Image.objects.searchable()
        .filter(gallery_id=gallery_id, embedding_version=version_id, embedded_at__lte=snapshot_at)
        .order_by("pk")
    )
    capacity = rows.count() + 1024  # room for rows committed between count and scan
    ids = np.empty(capacity, dtype=np.int64)  # (capacity,)
    vectors = np.empty((capacity, index.DIM), dtype=np.float32)  # (capacity, 512)
    n = 0
    for pk, emb in rows.values_list("pk", "embedding").iterator(chunk_size=2000):
        if n == capacity:
            capacity *= 2
            ids = np.resize(ids, capacity)
            vectors = np.resize(vectors, (capacity, index.DIM))
        ids[n] = pk
        vectors[n] = np.frombuffer(bytes(emb), dtype="<f4")
        n += 1
    return ids[:n], vectors[:n]


def gallery_rebuild_index(*, gallery_id):
    """Build the gallery's index from its searchable vectors of the current version.

    The caller holds the gallery's rebuild lock. Return the IndexBuild, or None
    when the gallery is gone.
    """
    gallery = Gallery.objects.filter(pk=gallery_id).first()
    if gallery is None:
        return None
    started = time.monotonic()
    snapshot_at = timezone.now()
    # Clear the flag before reading: a change during the build sets it again.
    Gallery.objects.filter(pk=gallery_id).update(index_dirty=False, index_dirty_since=None)
    version_id = embeddings.version()
    ids, vectors = _searchable_vectors(gallery_id, version_id, snapshot_at)
    last = gallery.index_builds.order_by("-version").first()
    version = (last.version + 1) if last else 1
    previous = gallery.current_build()
    try:
        built = index.build(gallery_id, version, ids, vectors, seed=settings.IMAGESEARCH_RANDOM_SEED)
    except Exception as exc:
        gallery_mark_dirty(gallery_id=gallery_id)
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
        )
        Gallery.objects.filter(pk=gallery_id).update(current_index=record)
    # Keep the previous ready version too: a web process may still be reading it.
    index.remove_versions(gallery_id, keep={version, previous.version} if previous else {version})
    return record
