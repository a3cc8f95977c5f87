"""Celery tasks: ids in, a service call, safe to run twice.

Each task is named explicitly: queued messages and CELERY_TASK_ROUTES name
tasks by these strings, so code can move without stranding a message.
gallery.jobs publishes them by the same names.
"""

import logging

from celery import shared_task

from gallery import embedding, jobs, locks, services
from gallery.models import Gallery
from gallery.search import queries
from gallery.services import exports, outside_queries

logger = logging.getLogger(__name__)


@shared_task(
    name=jobs.EMBED_IMAGES,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OSError,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=8,
)
def embed_images(image_ids):
    """Embed these images (those still pending); storage errors retry with backoff."""
    done = services.images_embed(image_ids=image_ids)
    logger.info("embedded %d of %d image(s)", done, len(image_ids))
    return done


@shared_task(name=jobs.REBUILD_INDEX, acks_late=True, autoretry_for=(OSError,), retry_backoff=10, max_retries=5)
def rebuild_index(gallery_id):
    """Rebuild one gallery's index unless another rebuild of it is running or it is current.

    Beat may queue a gallery again while its rebuild waits in the queue; the
    second delivery finds the flag cleared and a current build, and does nothing.
    """
    with locks.gallery_lock(gallery_id) as acquired:
        if not acquired:
            logger.info("gallery %s: a rebuild is already running", gallery_id)
            return None
        if not services.index_is_stale(gallery_id=gallery_id):
            return None
        build = services.gallery_rebuild_index(gallery_id=gallery_id)
    if build is None:
        return None
    jobs.publish_build_map(gallery_id, build.pk)
    jobs.publish_find_duplicates(gallery_id, build.pk)
    if services.probes_wanted(gallery_id=gallery_id):
        jobs.publish_probes(gallery_id)
    logger.info(
        "gallery %s: index v%d with %d items in %.2fs",
        gallery_id,
        build.version,
        build.item_count,
        build.duration_seconds,
    )
    return build.version


@shared_task(name=jobs.PROBE_COPIES, acks_late=True, autoretry_for=(OSError,), retry_backoff=10, max_retries=3)
def probe_copies(gallery_id):
    """Embed generated copies of some of the gallery's images, for its bands (skipped when the model cannot load)."""
    try:
        return services.gallery_probe_copies(gallery_id=gallery_id)
    except embedding.WeightsUnavailable as exc:
        logger.warning("gallery %s: no copy probes while the model cannot load: %s", gallery_id, exc)
        return 0


@shared_task(name=jobs.FIND_DUPLICATES, acks_late=True, autoretry_for=(OSError,), retry_backoff=10, max_retries=3)
def find_duplicates(gallery_id, build_id):
    """Group the near-duplicates of one build (once per build; skipped once the build is superseded)."""
    run = services.gallery_find_duplicates(gallery_id=gallery_id, build_id=build_id)
    return None if run is None else run.group_count


@shared_task(name=jobs.BUILD_MAP, acks_late=True, autoretry_for=(OSError,), retry_backoff=10, max_retries=3)
def build_map(gallery_id, build_id):
    """Lay out one build in 2-D for the map page (once per build; skipped once the build is superseded)."""
    record = services.gallery_build_map(gallery_id=gallery_id, build_id=build_id)
    return None if record is None else record.status


@shared_task(name="gallery.tasks.rebuild_stale_indexes")
def rebuild_stale_indexes():
    """Queue one rebuild per gallery whose index is out of date, and the grouping of builds that missed it (run by beat).

    Out of date includes a gallery whose switch to the active backbone can flip
    (every image has its next vector): that rebuild makes the new version current.
    """
    ids = list(Gallery.objects.filter(index_dirty=True).values_list("pk", flat=True))
    ids += [pk for pk in services.galleries_ready_to_switch() if pk not in ids]
    for gallery_id in ids:
        jobs.publish_rebuild(gallery_id)
    ungrouped = Gallery.objects.filter(current_index__isnull=False, current_index__grouping__isnull=True)
    for gallery_id, build_id in ungrouped.exclude(pk__in=ids).values_list("pk", "current_index_id")[:100]:
        jobs.publish_find_duplicates(gallery_id, build_id)
    unmapped = Gallery.objects.filter(current_index__isnull=False, current_index__map__isnull=True)
    for gallery_id, build_id in unmapped.exclude(pk__in=ids).values_list("pk", "current_index_id")[:100]:
        jobs.publish_build_map(gallery_id, build_id)
    return ids


@shared_task(name="gallery.tasks.reconcile_stuck_images")
def reconcile_stuck_images():
    """Queue again images lost to a killed worker or a broker outage (run by beat)."""
    ids = services.images_reconcile(broker_idle=locks.embed_queue_idle())
    if ids:
        logger.info("re-queued %d pending image(s)", len(ids))
    return len(ids)


@shared_task(name=jobs.EMBED_QUERY, acks_late=False, ignore_result=True)
def embed_query(reply_to, payload):
    """Embed an outside picture for the web request waiting on `reply_to`, and answer it.

    At most once (acknowledged on receipt): the request waits seconds, and a
    redelivery after a crash would answer no one. It expires with the wait.
    """
    jobs.answer_query(reply_to, queries.answer(payload))


@shared_task(name="gallery.tasks.purge_trash")
def purge_trash():
    """Delete for good what has been in a trash longer than IMAGESEARCH_TRASH_DAYS (run by beat)."""
    purged = services.trash_purge_expired()
    if purged:
        logger.info("purged %d trashed image(s)", purged)
    return purged


@shared_task(name="gallery.tasks.purge_outside_queries")
def purge_outside_queries():
    """Delete stored outside queries whose links have expired (run by beat)."""
    deleted = outside_queries.outside_queries_purge()
    if deleted:
        logger.info("purged %d expired outside quer%s", deleted, "y" if deleted == 1 else "ies")
    return deleted


@shared_task(name=jobs.BUILD_EXPORT, acks_late=True, reject_on_worker_lost=True)
def build_export(export_id):
    """Build one export an owner asked for (once: a ready or failed export is left as it is)."""
    export = exports.export_build(export_id=export_id)
    return None if export is None else export.status


@shared_task(name="gallery.tasks.purge_exports")
def purge_exports():
    """Delete exports older than IMAGESEARCH_EXPORT_DAYS, and queue again those lost on the way (run by beat)."""
    purged = exports.exports_purge_expired()
    requeued = exports.exports_requeue_stuck()
    if purged or requeued:
        logger.info("purged %d expired export(s), queued %d again", purged, len(requeued))
    return purged
