"""The one publisher of work for the workers.

Everything that queues a task comes through here: after the transaction
commits (a worker never sees a row that was rolled back), in task-sized
batches, and without hanging a request when the broker is down. Tasks are
looked up by name in the Celery app's registry, so this module imports no
task module (and services never import tasks).
"""

import logging
import time
from collections.abc import Iterable, Sequence

from celery import Task, current_app
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

EMBED_IMAGES = "gallery.tasks.embed_images"
REBUILD_INDEX = "gallery.tasks.rebuild_index"

# After a failed publish, this process skips the broker for a few seconds: a
# 100-file upload during an outage must not wait for 100 connection timeouts.
# Nothing is lost: the images stay pending and the reconciler queues them.
BROKER_BACKOFF_SECONDS = 5.0
_broker_down_until = 0.0


def task_size() -> int:
    """Images per embed task: a few model batches, so decoding overlaps inference."""
    return settings.IMAGESEARCH_EMBED_BATCH_SIZE * 4


def _task(name: str) -> Task:
    # By name: the registry is filled when GalleryConfig.ready() imports gallery.tasks.
    return current_app.tasks[name]


def broker_backoff_active() -> bool:
    """True while this process is skipping the broker after a failed publish."""
    return time.monotonic() < _broker_down_until


def reset() -> None:
    """Forget a recent broker failure (a new process, or a test, starts clean)."""
    global _broker_down_until
    _broker_down_until = 0.0


def send_embed_task(image_ids: Sequence[int]) -> None:
    """Publish one embed task for these images now; when the broker is down, leave them pending."""
    global _broker_down_until
    if broker_backoff_active():
        logger.info("broker recently unreachable: %d image(s) left pending for the reconciler", len(image_ids))
        return
    try:
        _task(EMBED_IMAGES).delay(list(image_ids))
    except Exception:  # broker down: the images wait in pending; the reconciler queues them later
        _broker_down_until = time.monotonic() + BROKER_BACKOFF_SECONDS
        logger.warning("could not queue embedding of %d image(s); they stay pending", len(image_ids), exc_info=True)


def publish_embedding(image_ids: Iterable[int]) -> None:
    """Publish embed tasks now, in task-sized batches."""
    ids = list(image_ids)
    step = task_size()
    for start in range(0, len(ids), step):
        send_embed_task(ids[start : start + step])


def queue_embedding(image_ids: Iterable[int]) -> int:
    """Queue embedding of these images once the transaction commits. Return how many."""
    ids = list(image_ids)
    if ids:
        transaction.on_commit(lambda: publish_embedding(ids))
    return len(ids)


def publish_rebuild(gallery_id: int) -> bool:
    """Publish a rebuild of one gallery's index now. Return False when the broker cannot be reached."""
    try:
        _task(REBUILD_INDEX).delay(gallery_id)
    except Exception:  # broker down: beat rebuilds stale galleries once it is back
        logger.warning("could not queue a rebuild of gallery %s; it stays marked stale", gallery_id, exc_info=True)
        return False
    return True


def queue_rebuild(gallery_id: int) -> None:
    """Queue a rebuild of one gallery's index once the transaction commits."""
    transaction.on_commit(lambda: publish_rebuild(gallery_id))
