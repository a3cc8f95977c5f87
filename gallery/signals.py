"""Signal receivers: the embed and query workers load the model at start; settings changes reset process state."""

import logging

import numpy as np
from celery.signals import worker_ready
from django.core.signals import setting_changed

from gallery import embedding, jobs
from gallery.models import IndexBuild, SystemNotice
from gallery.search import cache

logger = logging.getLogger(__name__)

# Settings whose change makes what a process has loaded or cached wrong.
PROCESS_STATE_SETTINGS = {
    "IMAGESEARCH_BACKBONE",
    "IMAGESEARCH_PRECISION",
    "IMAGESEARCH_VGG16_WEIGHTS",
    "IMAGESEARCH_RESNET50_WEIGHTS",
    "IMAGESEARCH_INCEPTIONV3_WEIGHTS",
    "IMAGESEARCH_MOBILENETV3_WEIGHTS",
    "IMAGESEARCH_RANDOM_SEED",
    "IMAGESEARCH_EMBED_BATCH_SIZE",
    "IMAGESEARCH_INDEX_DIR",
}


def reset_process_state():
    """Forget everything this process keeps between requests: the model, open indexes, cached builds, broker back-off."""
    embedding.reset()
    cache.evict()
    IndexBuild.forget_cached()
    jobs.reset()


def _on_setting_changed(*, setting, **kwargs):
    if setting in PROCESS_STATE_SETTINGS:
        reset_process_state()


setting_changed.connect(_on_setting_changed, dispatch_uid="gallery.reset_process_state")


MODEL_QUEUES = {"embed", "query"}


@worker_ready.connect(dispatch_uid="gallery.load_model_at_start")
def load_model_at_start(sender, **kwargs):
    """Load the model as a solo-pool embed or query worker starts, so a weights problem shows at once.

    A query worker also runs one forward pass on a blank picture: the first
    search then finds the graph traced and its buffers allocated.
    """
    # The sender is the worker's consumer; with a prefork pool the model must
    # load in the child processes (TensorFlow does not survive a fork), so only
    # a solo-pool worker loads it here.
    task_consumer = getattr(sender, "task_consumer", None)
    queues = {q.name for q in task_consumer.queues} if task_consumer is not None else set()
    if not queues & MODEL_QUEUES or type(getattr(sender, "pool", None)).__module__ != "celery.concurrency.solo":
        return
    try:
        embedding.load()
        if "query" in queues:
            side = embedding.input_size()
            embedding.embed_batch([np.zeros((side, side, 3), dtype=np.float32)])  # (1, D), discarded
    except embedding.WeightsUnavailable as exc:
        logger.error("%s Images wait in pending and searches with a picture fail until this is fixed.", exc)
        SystemNotice.post(SystemNotice.WEIGHTS, str(exc))
    else:
        SystemNotice.clear(SystemNotice.WEIGHTS)
        logger.info("model loaded (%s)", embedding.version())
