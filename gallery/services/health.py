"""One-click repair of a gallery, for staff: everything the workers would eventually redo, now.

Each step goes through the service or job that does it in normal running, and
each is idempotent: a second click re-queues what is still outstanding and
nothing else (an embed task skips images already claimed or embedded; a
rebuild of a fresh index returns at once; grouping a build already grouped
returns its run).
"""

from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from gallery import jobs
from gallery.models import EmbeddingState, Gallery, GroupingRun, Image, MapBuild
from gallery.services.galleries import gallery_rebuild_request
from gallery.services.uploads import images_queue_embedding, images_retry


@dataclass
class Repair:
    """What one repair queued."""

    retried: int = 0  # failed images put back in the queue
    requeued: int = 0  # pending or stuck-processing images queued again
    rebuild: bool = False  # an index rebuild was asked for
    grouping: bool = False  # near-duplicate grouping of the current build was queued
    map: bool = False  # the current build's map was queued
    steps: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        return "Repair queued: " + "; ".join(self.steps) + "."


def gallery_repair(*, gallery: Gallery) -> Repair:
    """Requeue failed and stuck images, ask for an index rebuild, re-run grouping and the map; say what was queued."""
    report = Repair()
    report.retried = images_retry(images=gallery.images.all())
    stale = timezone.now() - timedelta(seconds=settings.IMAGESEARCH_STUCK_AFTER_SECONDS)
    with transaction.atomic():
        # A claim older than the stuck limit belongs to a worker that died: release it (as beat's reconcile does).
        Image.objects.filter(gallery=gallery, embedding_state=EmbeddingState.PROCESSING, claimed_at__lt=stale).update(
            embedding_state=EmbeddingState.PENDING, claim_token=None, claimed_at=None
        )
        pending = list(
            gallery.images.filter(embedding_state=EmbeddingState.PENDING, claim_token__isnull=True).values_list(
                "pk", flat=True
            )
        )
    report.requeued = images_queue_embedding(image_ids=pending) if pending else 0
    report.steps.append(f"{report.retried} failed image{'' if report.retried == 1 else 's'} retried")
    report.steps.append(f"{report.requeued} waiting image{'' if report.requeued == 1 else 's'} queued again")
    gallery_rebuild_request(gallery_id=gallery.pk)
    report.rebuild = True
    report.steps.append("index rebuild requested")
    build = gallery.current_build()
    if build is not None:
        # What each build derives (its near-duplicate groups, its map): queued again where missing or failed.
        derived = (
            (GroupingRun, jobs.publish_find_duplicates, "grouping", "near-duplicate grouping"),
            (MapBuild, jobs.publish_build_map, "map", "map"),
        )
        for model, publish, flag, label in derived:
            if model.objects.filter(build=build, status=model.Status.READY).exists():
                continue
            model.objects.filter(build=build).exclude(status=model.Status.READY).delete()
            transaction.on_commit(partial(publish, gallery.pk, build.pk))
            setattr(report, flag, True)
            report.steps.append(f"{label} of index v{build.version} queued")
    return report
