"""The worker side of embedding: claim pending images, decode ahead, embed in batches, write back.

Every state change is a conditional UPDATE on the claim token, so two
deliveries of one task (acks_late) never both write an image, and a task
that lost its claim writes nothing.
"""

import logging
import uuid
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from gallery import embedding, jobs, vectors
from gallery.embedding import imaging
from gallery.models import EmbeddingState, Image, SystemNotice

logger = logging.getLogger(__name__)


def claim(image_ids: Iterable[int], fill_to: int = 0) -> tuple[uuid.UUID, list[Image]]:
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
    fields = {
        "embedding_state": EmbeddingState.PROCESSING,
        "claim_token": token,
        "claimed_at": now,
        "attempts": F("attempts") + 1,
    }
    n = Image.objects.filter(pk__in=image_ids).filter(claimable).update(**fields)
    if 0 < n < fill_to:
        galleries = Image.objects.filter(claim_token=token).values("gallery_id")
        more = list(
            Image.objects.filter(gallery_id__in=galleries, embedding_state=EmbeddingState.PENDING)
            .order_by("pk")
            .values_list("pk", flat=True)[: fill_to - n]
        )
        # Conditional again: another worker may have claimed some of these meanwhile.
        Image.objects.filter(pk__in=more, embedding_state=EmbeddingState.PENDING).update(**fields)
    return token, list(Image.objects.filter(claim_token=token).order_by("pk"))


def release(token: uuid.UUID, ids: Collection[int] | None = None) -> None:
    """Put a claim's images (or some of them) back to pending at once."""
    qs = Image.objects.filter(claim_token=token, embedding_state=EmbeddingState.PROCESSING)
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    qs.update(embedding_state=EmbeddingState.PENDING, claim_token=None, claimed_at=None)


def touch(token: uuid.UUID) -> None:
    """Renew a claim, so a long task's images are not taken for lost by the reconciler."""
    Image.objects.filter(claim_token=token, embedding_state=EmbeddingState.PROCESSING).update(claimed_at=timezone.now())


def decode(image: Image) -> npt.NDArray[np.float32] | imaging.InvalidImage:
    """Return the model input (S, S, 3) float32 or an InvalidImage; raise OSError on storage trouble."""
    try:
        with image.file.open("rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        # Gone for good (deleted behind our back): retrying cannot help.
        return imaging.InvalidImage("The stored file is missing; upload the image again.")
    try:
        return imaging.model_input(data, embedding.input_size())
    except imaging.InvalidImage as exc:
        return exc
    except Exception as exc:  # Pillow raises many types for damaged data
        return imaging.InvalidImage(f"The image could not be decoded ({type(exc).__name__}: {exc}).")


def embed(image_ids: Iterable[int]) -> tuple[int, dict[int, list[int]]]:
    """Embed the given images, batch by batch. Safe to run twice: only claimed rows are written.

    Return (number made ready, {gallery_id: [claimed pks]}). Raise OSError on
    storage trouble (the claim is released first, so a retry finds the images
    pending again). When the weights cannot be loaded the images go back to
    pending and a SystemNotice says why.
    """
    token, images = claim(image_ids, fill_to=jobs.task_size())
    claimed: dict[int, list[int]] = {}
    for img in images:
        claimed.setdefault(img.gallery_id, []).append(img.pk)
    if not images:
        return 0, claimed
    version = embedding.version()
    batch = settings.IMAGESEARCH_EMBED_BATCH_SIZE
    chunks = [images[i : i + batch] for i in range(0, len(images), batch)]
    done = 0
    paused = False
    # Decode the next chunk on a thread while the model runs the current one
    # (Pillow and TensorFlow both release the GIL).
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = pool.map(decode, chunks[0])
        for i, chunk in enumerate(chunks):
            try:
                decoded = list(pending)
            except BaseException:  # storage trouble: pending again at once, and the task retries
                release(token)
                raise
            if i + 1 < len(chunks):
                pending = pool.map(decode, chunks[i + 1])
            good = [(img, arr) for img, arr in zip(chunk, decoded, strict=True) if not isinstance(arr, Exception)]
            for img, err in zip(chunk, decoded, strict=True):
                if isinstance(err, Exception):
                    Image.objects.filter(pk=img.pk, claim_token=token).update(
                        embedding_state=EmbeddingState.FAILED, embedding_error=str(err), claim_token=None
                    )
            if not good:
                continue
            try:
                batch_vectors = embedding.embed_batch([arr for _, arr in good])  # (b, D)
            except embedding.WeightsUnavailable as exc:
                release(token)
                SystemNotice.post(SystemNotice.WEIGHTS, str(exc))
                logger.error("embedding paused, images stay pending: %s", exc)
                paused = True
                break
            except BaseException:
                release(token)  # pending again at once, not after the stuck timeout
                raise
            now = timezone.now()
            written: list[int] = []
            with transaction.atomic():
                for (img, _), vec in zip(good, batch_vectors, strict=True):
                    # The token check makes a redelivered or stale task write nothing.
                    if Image.objects.filter(pk=img.pk, claim_token=token).update(
                        embedding=vectors.pack(vec),
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
                touch(token)
    if not paused:
        SystemNotice.clear(SystemNotice.WEIGHTS)
    return done, claimed


def reconcile(*, broker_idle: bool) -> list[int]:
    """Find work that was lost (a killed worker, a broker outage) and queue it again.

    Images claimed longer than IMAGESEARCH_STUCK_AFTER_SECONDS go back to pending,
    and vectors of another embedding version are embedded again. Pending images
    are queued again only when the broker's embed queue is empty (`broker_idle`),
    so a long import is not queued twice. Return the ids queued.
    """
    stale = timezone.now() - timedelta(seconds=settings.IMAGESEARCH_STUCK_AFTER_SECONDS)
    Image.objects.filter(embedding_state=EmbeddingState.PROCESSING, claimed_at__lt=stale).update(
        embedding_state=EmbeddingState.PENDING, claim_token=None, claimed_at=None
    )
    Image.objects.filter(embedding_state=EmbeddingState.READY).exclude(embedding_version=embedding.version()).update(
        embedding_state=EmbeddingState.PENDING, claim_token=None
    )
    if not broker_idle:
        return []
    ids = list(Image.objects.filter(embedding_state=EmbeddingState.PENDING).order_by("pk").values_list("pk", flat=True))
    jobs.publish_embedding(ids)
    return ids
