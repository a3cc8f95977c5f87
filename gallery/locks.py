"""Cross-process coordination through the broker's Redis: the per-gallery rebuild lock, the embed queue probe."""

import logging
import threading
from contextlib import contextmanager

from celery import current_app
from django.conf import settings

logger = logging.getLogger(__name__)

LOCK_SECONDS = 30 * 60  # a 1M-image rebuild takes minutes; a crashed holder frees it after this
EMBED_QUEUE = "embed"
_local_locks: dict[str, threading.Lock] = {}
_local_locks_guard = threading.Lock()
EXPORT_LOCK_SECONDS = 20 * 60  # a 1M x 512 embeddings export writes 2 GB: a few minutes


@contextmanager
def _redis_lock(key, *, timeout, what):
    """Hold the Redis lock `key` (eager: a thread lock of that name); yield False if another holder has it."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        # No Redis: tasks run inside this one process, so a thread lock excludes enough.
        with _local_locks_guard:
            local = _local_locks.setdefault(key, threading.Lock())
        acquired = local.acquire(blocking=False)
        try:
            yield acquired
        finally:
            if acquired:
                local.release()
        return
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    lock = client.lock(key, timeout=timeout, blocking=False)
    acquired = lock.acquire()
    try:
        yield acquired
    finally:
        if acquired:
            try:
                lock.release()
            except redis.exceptions.LockError:
                logger.warning("%s expired before release", what)


def gallery_lock(gallery_id):
    """Hold a Redis lock for the gallery's index; yield False if another holder has it."""
    return _redis_lock(
        f"imagesearch:index-lock:{gallery_id}",
        timeout=LOCK_SECONDS,
        what=f"index lock of gallery {gallery_id}",
    )


def export_lock(export_id):
    """Hold a Redis lock while one delivery builds an export; yield False if another holder has it.

    Shorter than the rebuild lock: a crashed builder's export is taken up again by beat's next sweep.
    """
    return _redis_lock(
        f"imagesearch:export-lock:{export_id}",
        timeout=EXPORT_LOCK_SECONDS,
        what=f"lock of export {export_id}",
    )


def embed_queue_idle():
    """True when the broker holds no waiting embed task (always, in eager mode)."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return True
    with current_app.connection_for_write() as conn:
        return conn.default_channel.client.llen(EMBED_QUEUE) == 0
