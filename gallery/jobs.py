"""The one publisher of work for the workers.

Everything that queues a task comes through here: after the transaction
commits (a worker never sees a row that was rolled back), in task-sized
batches, and without hanging a request when the broker is down. Tasks are
looked up by name in the Celery app's registry, so this module imports no
task module (and services never import tasks).

One request waits for its answer: a search with an outside picture asks the
query worker to embed it (ask_query_worker), and the worker answers on a Redis
list named in the request (answer_query).
"""

import json
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from celery import Task, current_app
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

EMBED_IMAGES = "gallery.tasks.embed_images"
REBUILD_INDEX = "gallery.tasks.rebuild_index"
PROBE_COPIES = "gallery.tasks.probe_copies"
FIND_DUPLICATES = "gallery.tasks.find_duplicates"
BUILD_MAP = "gallery.tasks.build_map"
EMBED_QUERY = "gallery.tasks.embed_query"
BUILD_EXPORT = "gallery.tasks.build_export"
# A query's answer comes back on a Redis list of its own, named by the request.
QUERY_REPLY_PREFIX = "imagesearch:query-reply:"

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


def publish_probes(gallery_id: int) -> None:
    """Queue the embedding of generated copies of some of the gallery's images (gallery.services.probes)."""
    try:
        _task(PROBE_COPIES).delay(gallery_id)
    except Exception:  # broker down: the next build asks again
        logger.warning("could not queue copy probes of gallery %s", gallery_id, exc_info=True)


def publish_find_duplicates(gallery_id: int, build_id: int) -> bool:
    """Queue the near-duplicate grouping of a build. Return False when the broker cannot be reached (beat asks again)."""
    try:
        _task(FIND_DUPLICATES).delay(gallery_id, build_id)
    except Exception:
        logger.warning("could not queue duplicate grouping of gallery %s", gallery_id, exc_info=True)
        return False
    return True


def publish_build_map(gallery_id: int, build_id: int) -> bool:
    """Queue the 2-D map of a build. Return False when the broker cannot be reached (beat asks again)."""
    try:
        _task(BUILD_MAP).delay(gallery_id, build_id)
    except Exception:
        logger.warning("could not queue the map of gallery %s", gallery_id, exc_info=True)
        return False
    return True


def publish_export(export_id: int) -> bool:
    """Publish the build of one export now. Return False when the broker cannot be reached (beat queues it again)."""
    try:
        _task(BUILD_EXPORT).delay(export_id)
    except Exception:
        logger.warning("could not queue export %s; it stays pending", export_id, exc_info=True)
        return False
    return True


def queue_export(export_id: int) -> None:
    """Queue the build of one export once the transaction commits."""
    transaction.on_commit(lambda: publish_export(export_id))


def queue_rebuild(gallery_id: int) -> None:
    """Queue a rebuild of one gallery's index once the transaction commits."""
    transaction.on_commit(lambda: publish_rebuild(gallery_id))


# --- Requests that wait for their answer --------------------------------------


class NoAnswer(Exception):
    """No worker answered a request in time (or the broker cannot be reached); the message is for people."""


_reply_pools: dict[tuple[str, float], Any] = {}


def _reply_client(timeout: float) -> Any:
    """A client whose reads outlast a wait of `timeout` seconds (redis-py's default gives up after 5)."""
    import redis

    key = (settings.CELERY_BROKER_URL, timeout)
    pool = _reply_pools.get(key)
    if pool is None:  # one pool per process: BLPOP from several threads, each on its own connection
        pool = _reply_pools[key] = redis.ConnectionPool.from_url(
            key[0], socket_connect_timeout=2, socket_timeout=timeout + 5
        )
    return redis.Redis(connection_pool=pool)


def ask_query_worker(payload: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """Publish an embed_query task and wait up to `timeout` seconds for its answer; return it.

    The task expires with the wait, so a worker that comes back later skips it.
    Raise NoAnswer when the broker cannot be reached or no answer came.
    """
    reply_to = QUERY_REPLY_PREFIX + uuid.uuid4().hex
    try:
        _task(EMBED_QUERY).apply_async((reply_to, payload), expires=timeout)
        popped = _reply_client(timeout).blpop([reply_to], timeout=timeout)
    except Exception as exc:  # redis-py's and kombu's connection errors: a person needs only the cause
        logger.warning("could not ask the query worker: %s", exc)
        raise NoAnswer("the broker (Redis) cannot be reached.") from None
    if popped is None:
        raise NoAnswer(f"no query worker answered within {timeout:g} s.")
    answer: dict[str, Any] = json.loads(popped[1])
    return answer


def answer_query(reply_to: str, answer: dict[str, Any], *, keep_seconds: int = 60) -> None:
    """Send a worker's answer to the request waiting on `reply_to` (kept briefly if it has stopped waiting)."""
    client = _reply_client(10.0)
    with client.pipeline() as pipe:
        pipe.rpush(reply_to, json.dumps(answer))
        pipe.expire(reply_to, keep_seconds)
        pipe.execute()
