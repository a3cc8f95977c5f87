"""Celery tasks: ids in, a service call, safe to run twice."""

import logging
import threading
from contextlib import contextmanager

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from gallery import services
from gallery.models import Gallery

logger = logging.getLogger(__name__)

LOCK_SECONDS = 30 * 60  # a 1M-image rebuild takes minutes; a crashed holder frees it after this
_local_locks = {}
_local_locks_guard = threading.Lock()


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OSError,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=8,
)
def embed_images(self, image_ids):
    """Embed these images (those still pending); storage errors retry with backoff."""
    done = services.images_embed(image_ids=image_ids)
    logger.info("embedded %d of %d image(s)", done, len(image_ids))
    return done


@contextmanager
def gallery_lock(gallery_id):
    """Hold a Redis lock for the gallery's index; yield False if another holder has it."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        # No Redis: tasks run inside this one process, so a thread lock excludes enough.
        with _local_locks_guard:
            local = _local_locks.setdefault(gallery_id, threading.Lock())
        acquired = local.acquire(blocking=False)
        try:
            yield acquired
        finally:
            if acquired:
                local.release()
        return
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    lock = client.lock(f"imagesearch:index-lock:{gallery_id}", timeout=LOCK_SECONDS, blocking=False)
    acquired = lock.acquire()
    try:
        yield acquired
    finally:
        if acquired:
            try:
                lock.release()
            except redis.exceptions.LockError:
                logger.warning("index lock of gallery %s expired before release", gallery_id)


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=10, max_retries=5)
def rebuild_index(gallery_id):
    """Rebuild one gallery's index unless another rebuild of it is running or it is current.

    Beat may queue a gallery again while its rebuild waits in the queue; the
    second delivery finds the flag cleared and a current build, and does nothing.
    """
    with gallery_lock(gallery_id) as acquired:
        if not acquired:
            logger.info("gallery %s: a rebuild is already running", gallery_id)
            return None
        if not _index_stale(gallery_id):
            return None
        build = services.gallery_rebuild_index(gallery_id=gallery_id)
    if build is None:
        return None
    logger.info("gallery %s: index v%d with %d items in %.2fs", gallery_id, build.version, build.item_count, build.duration_seconds)
    return build.version


def _index_stale(gallery_id):
    from gallery import embeddings
    from gallery.models import IndexBuild

    gallery = Gallery.objects.filter(pk=gallery_id).only("index_dirty").first()
    if gallery is None:
        return False
    if gallery.index_dirty:
        return True
    return not IndexBuild.objects.filter(
        gallery_id=gallery_id, status=IndexBuild.Status.READY, embedding_version=embeddings.version()
    ).exists()


@shared_task
def rebuild_stale_indexes():
    """Queue one rebuild per gallery whose index is out of date (run by beat)."""
    ids = list(Gallery.objects.filter(index_dirty=True).values_list("pk", flat=True))
    for gallery_id in ids:
        rebuild_index.delay(gallery_id)
    return ids


def _embed_queue_idle():
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return True
    from imagesearch.celery import app

    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        return client.llen("embed") == 0


@shared_task
def reconcile_stuck_images():
    """Queue again images lost to a killed worker or a broker outage (run by beat)."""
    ids = services.images_reconcile(broker_idle=_embed_queue_idle())
    if ids:
        logger.info("re-queued %d pending image(s)", len(ids))
    return len(ids)


@worker_ready.connect
def load_model_at_start(sender, **kwargs):
    """Load VGG16 as a solo-pool embed worker starts, so a weights problem shows at once."""
    # The sender is the worker's consumer; with a prefork pool the model must
    # load in the child processes (TensorFlow does not survive a fork), so only
    # a solo-pool worker loads it here.
    task_consumer = getattr(sender, "task_consumer", None)
    queues = {q.name for q in task_consumer.queues} if task_consumer is not None else set()
    if "embed" not in queues or type(getattr(sender, "pool", None)).__module__ != "celery.concurrency.solo":
        return
    from gallery import embeddings
    from gallery.models import SystemNotice

    try:
        embeddings.load()
    except embeddings.WeightsUnavailable as exc:
        logger.error("%s Images wait in pending until this is fixed.", exc)
        SystemNotice.objects.update_or_create(key=services.WEIGHTS_NOTICE, defaults={"message": str(exc)})
    else:
        SystemNotice.objects.filter(key=services.WEIGHTS_NOTICE).delete()
        logger.info("VGG16 loaded (%s)", embeddings.version())
