"""The worker side of embedding: claim pending images, decode ahead, embed in batches, write back.

Every state change is a conditional UPDATE on the claim token, so two
deliveries of one task (acks_late) never both write an image, and a task
that lost its claim writes nothing.

During a switch of backbone (the active version differs from the version a
gallery serves, gallery.embedding.served_version) the same task also builds
the new version's vectors into Image.next_embedding, never touching the
served `embedding`: ready images are claimed for that without leaving
*ready* (claim_next), so search keeps finding them; a new upload gets both
vectors. gallery.services.indexing flips a gallery once all its vectors are there.
"""

import logging
import uuid
from collections.abc import Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from gallery import embedding, jobs, vectors
from gallery.embedding import imaging
from gallery.models import EmbeddingState, Gallery, Image, SystemNotice

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


def decode(image: Image, size: int | None = None) -> npt.NDArray[np.float32] | imaging.InvalidImage:
    """Return the model input (S, S, 3) float32 (S = `size`, default the active backbone's) or an InvalidImage.

    Raise OSError on storage trouble.
    """
    try:
        with image.file.open("rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        # Gone for good (deleted behind our back): retrying cannot help.
        return imaging.InvalidImage("The stored file is missing; upload the image again.")
    try:
        return imaging.model_input(data, size or embedding.input_size())
    except imaging.InvalidImage as exc:
        return exc
    except Exception as exc:  # Pillow raises many types for damaged data
        return imaging.InvalidImage(f"The image could not be decoded ({type(exc).__name__}: {exc}).")


# --- The switch: next vectors beside the served ones -----------------------------------------


def switching_images() -> QuerySet[Image]:
    """Ready images lacking a vector of the active version, in galleries that serve another version.

    A gallery without a build serves the active version: its images of another
    version are embedded again in place (reconcile), there is no index to keep.
    """
    active = embedding.version()
    return (
        Image.objects.filter(embedding_state=EmbeddingState.READY, gallery__current_index__isnull=False)
        .exclude(gallery__current_index__embedding_version=active)
        .exclude(embedding_version=active)
        .exclude(next_embedding_version=active)
    )


def claim_next(image_ids: Iterable[int], fill_to: int = 0) -> tuple[uuid.UUID, list[Image]]:
    """Claim ready images for their next vector: the claim token only, they stay *ready* and searchable.

    Return (token, claimed images), as claim() does; `fill_to` claims more
    switching images of the same galleries.
    """
    token = uuid.uuid4()
    now = timezone.now()
    stale = now - timedelta(seconds=settings.IMAGESEARCH_STUCK_AFTER_SECONDS)
    free = Q(claim_token__isnull=True) | Q(claimed_at__lt=stale) | Q(claimed_at__isnull=True)
    fields = {"claim_token": token, "claimed_at": now}
    # Conditional UPDATEs of pks chosen first: Django cannot UPDATE through the joins of switching_images().
    wanted = list(switching_images().filter(pk__in=list(image_ids)).filter(free).values_list("pk", flat=True))
    n = Image.objects.filter(pk__in=wanted, embedding_state=EmbeddingState.READY).filter(free).update(**fields)
    if n < fill_to:
        galleries = list(Image.objects.filter(pk__in=wanted).values_list("gallery_id", flat=True).distinct())
        more = list(
            switching_images()
            .filter(gallery_id__in=galleries)
            .filter(free)
            .order_by("pk")
            .values_list("pk", flat=True)[: fill_to - n]
        )
        Image.objects.filter(pk__in=more, embedding_state=EmbeddingState.READY).filter(free).update(**fields)
    return token, list(Image.objects.filter(claim_token=token, embedding_state=EmbeddingState.READY).order_by("pk"))


@dataclass(frozen=True)
class SwitchCoverage:
    """How far a gallery's switch to the active embedding version has come."""

    served: str  # the version search uses now
    target: str  # the active version
    covered: int  # searchable images with a vector of `target` (served or next)
    total: int  # searchable images

    @property
    def switching(self) -> bool:
        return self.served != self.target

    @property
    def complete(self) -> bool:
        return self.covered >= self.total

    def as_json(self, *, detailed: bool = False) -> dict[str, object] | None:
        """The gallery status's `switch` part (None when no switch runs), with a line for people.

        `detailed` (staff) adds the two embedding versions.
        """
        if not self.switching:
            return None
        to = embedding.backbone_name(self.target)
        out: dict[str, object] = {
            "from": embedding.backbone_name(self.served),
            "to": to,
            "covered": self.covered,
            "total": self.total,
            "label": f"Switching model: {self.covered} of {self.total} re-embedded for {to}"
            + (" (the index flips next)" if self.complete else ""),
        }
        if detailed:
            out.update(from_version=self.served, to_version=self.target)
        return out


def switch_coverage(*, gallery: Gallery) -> SwitchCoverage:
    """Return the gallery's switch coverage (covered == total and served == target when no switch runs)."""
    served = embedding.served_version(gallery)
    target = embedding.version()
    searchable = Image.objects.searchable().filter(gallery_id=gallery.pk)
    if served == target:
        total = searchable.count()
        return SwitchCoverage(served, target, total, total)
    counts = searchable.aggregate(
        total=Count("pk"),
        covered=Count("pk", filter=Q(embedding_version=target) | Q(next_embedding_version=target)),
    )
    return SwitchCoverage(served, target, counts["covered"], counts["total"])


def _fail_unreadable(
    chunk: Sequence[Image], decoded: Sequence[npt.NDArray[np.float32] | Exception], token: uuid.UUID
) -> list[tuple[Image, npt.NDArray[np.float32]]]:
    """Mark the images of `chunk` that did not decode failed, with their reason; return the others with their arrays."""
    good = []
    for img, arr in zip(chunk, decoded, strict=True):
        if isinstance(arr, Exception):
            Image.objects.filter(pk=img.pk, claim_token=token).update(
                embedding_state=EmbeddingState.FAILED, embedding_error=str(arr), claim_token=None
            )
        else:
            good.append((img, arr))
    return good


def _served_versions(gallery_ids: Collection[int]) -> dict[int, str]:
    """Return {gallery_id: the version it serves} (one query, builds from the per-process cache)."""
    return {g.pk: embedding.served_version(g) for g in Gallery.objects.filter(pk__in=gallery_ids)}


def embed_next(image_ids: Iterable[int]) -> dict[int, list[int]]:
    """Write next vectors (active version) of switching ready images; their served vectors stay as they are.

    Return {gallery_id: [pks written]}. Safe to run twice: a written image is no
    longer switching, and the claim token guards every write.
    """
    token, images = claim_next(image_ids, fill_to=jobs.task_size())
    written: dict[int, list[int]] = {}
    if not images:
        return written
    version = embedding.version()
    batch = settings.IMAGESEARCH_EMBED_BATCH_SIZE
    try:
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch]
            decoded = [decode(img) for img in chunk]
            # Unreadable now although it was embedded once: the flip must not wait for it forever.
            good = _fail_unreadable(chunk, decoded, token)
            if not good:
                continue
            vecs = embedding.embed_batch([arr for _, arr in good])  # (b, D) of the active version
            with transaction.atomic():
                for (img, _), vec in zip(good, vecs, strict=True):
                    if Image.objects.filter(pk=img.pk, claim_token=token, embedding_state=EmbeddingState.READY).update(
                        next_embedding=vectors.pack(vec), next_embedding_version=version, claim_token=None
                    ):
                        written.setdefault(img.gallery_id, []).append(img.pk)
            touch_next(token)
    except embedding.WeightsUnavailable as exc:
        SystemNotice.post(SystemNotice.WEIGHTS, str(exc))
        logger.error("switch paused, served vectors unchanged: %s", exc)
    finally:
        # Whatever was not written is free again at once (a retry or beat takes it).
        Image.objects.filter(claim_token=token, embedding_state=EmbeddingState.READY).update(
            claim_token=None, claimed_at=None
        )
    n = sum(len(v) for v in written.values())
    if n:
        logger.info("stored %d next vector(s) of %s", n, version)
    return written


def touch_next(token: uuid.UUID) -> None:
    """Renew a next-vector claim (the images stay ready)."""
    Image.objects.filter(claim_token=token, embedding_state=EmbeddingState.READY).update(claimed_at=timezone.now())


def embed(image_ids: Iterable[int]) -> tuple[int, dict[int, list[int]]]:
    """Embed the given images, batch by batch. Safe to run twice: only claimed rows are written.

    Return (number made ready, {gallery_id: [claimed pks]}). Raise OSError on
    storage trouble (the claim is released first, so a retry finds the images
    pending again). When the weights cannot be loaded the images go back to
    pending and a SystemNotice says why.
    """
    image_ids = list(image_ids)
    token, images = claim(image_ids, fill_to=jobs.task_size())
    claimed: dict[int, list[int]] = {}
    for img in images:
        claimed.setdefault(img.gallery_id, []).append(img.pk)
    if not images:
        return 0, claimed
    version = embedding.version()
    # A gallery serving another version (a switch under way) gets that version's
    # vector too, so a new upload is found at once and still moves with the flip.
    served = _served_versions(claimed.keys())
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
            good = _fail_unreadable(chunk, decoded, token)
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
            old = _old_vectors(good, served, version)
            now = timezone.now()
            written: list[int] = []
            with transaction.atomic():
                for (img, _), vec in zip(good, batch_vectors, strict=True):
                    old_version = served.get(img.gallery_id, version)
                    if old_version == version:
                        fields = {"embedding": vectors.pack(vec), "embedding_version": version, "embedded_at": now}
                    else:
                        prev = old.get(img.pk)
                        fields = {
                            "embedding": None if prev is None else vectors.pack(prev),
                            "embedding_version": "" if prev is None else old_version,
                            "embedded_at": None if prev is None else now,
                            "next_embedding": vectors.pack(vec),
                            "next_embedding_version": version,
                        }
                    # The token check makes a redelivered or stale task write nothing.
                    if Image.objects.filter(pk=img.pk, claim_token=token).update(
                        embedding_state=EmbeddingState.READY, embedding_error="", claim_token=None, **fields
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


def _old_vectors(
    good: list[tuple[Image, npt.NDArray[np.float32]]], served: dict[int, str], version: str
) -> dict[int, npt.NDArray[np.float32]]:
    """Return {pk: vector in its gallery's served version} for the images of galleries in a switch.

    An image whose served version cannot be embedded any more (its weights file
    is gone) gets none: it is found once its gallery flips.
    """
    by_version: dict[str, list[Image]] = {}
    for img, _arr in good:
        old_version = served.get(img.gallery_id, version)
        if old_version != version:
            by_version.setdefault(old_version, []).append(img)
    out: dict[int, npt.NDArray[np.float32]] = {}
    for old_version, imgs in by_version.items():
        size = embedding.input_size_of(old_version)
        decoded = [(img, decode(img, size)) for img in imgs]
        ok = [(img, arr) for img, arr in decoded if not isinstance(arr, Exception)]
        if not ok:
            continue
        try:
            vecs = embedding.embed_batch_as(old_version, [arr for _, arr in ok])  # (b, D_old)
        except embedding.WeightsUnavailable as exc:
            logger.warning("no %s vectors for new images (found after the switch): %s", old_version, exc)
            continue
        out.update((img.pk, vec) for (img, _), vec in zip(ok, vecs, strict=True))
    return out


def reconcile(*, broker_idle: bool) -> list[int]:
    """Find work that was lost (a killed worker, a broker outage) and queue it again.

    Images claimed longer than IMAGESEARCH_STUCK_AFTER_SECONDS go back to pending.
    Vectors of another embedding version are never reset where a gallery
    serves them (that would empty its search during a switch): they get a next
    vector (embed_next) and move at the gallery's flip. Only in a gallery that
    already serves the active version (or has no build) is such an image
    embedded again in place, or given its next vector at once when it has one
    (a trashed image restored after the flip). Pending and switching images
    are queued again only when the broker's embed queue is empty
    (`broker_idle`), so a long import is not queued twice. Return the ids queued.
    """
    active = embedding.version()
    stale = timezone.now() - timedelta(seconds=settings.IMAGESEARCH_STUCK_AFTER_SECONDS)
    Image.objects.filter(embedding_state=EmbeddingState.PROCESSING, claimed_at__lt=stale).update(
        embedding_state=EmbeddingState.PENDING, claim_token=None, claimed_at=None
    )
    serving_active = Q(gallery__current_index__isnull=True) | Q(gallery__current_index__embedding_version=active)
    outdated = (
        Image.objects.filter(embedding_state=EmbeddingState.READY)
        .filter(serving_active)
        .exclude(embedding_version=active)
    )
    moved = list(outdated.filter(next_embedding_version=active).values_list("pk", "gallery_id"))
    if moved:
        Image.objects.filter(pk__in=[pk for pk, _ in moved], next_embedding_version=active).update(
            embedding=F("next_embedding"),
            embedding_version=active,
            embedded_at=timezone.now(),
            next_embedding=None,
            next_embedding_version="",
        )
        for gallery_id in {g for _, g in moved}:
            Gallery.objects.filter(pk=gallery_id).mark_index_stale()
    stale_pks = list(outdated.values_list("pk", flat=True))
    if stale_pks:
        Image.objects.filter(pk__in=stale_pks, embedding_state=EmbeddingState.READY).update(
            embedding_state=EmbeddingState.PENDING, claim_token=None
        )
    if not broker_idle:
        return []
    ids = list(Image.objects.filter(embedding_state=EmbeddingState.PENDING).order_by("pk").values_list("pk", flat=True))
    switching = list(switching_images().order_by("pk").values_list("pk", flat=True))
    jobs.publish_embedding(ids + switching)
    return ids + switching
