"""System checks for settings that are valid one by one but wrong together."""

import os

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.compatibility)
def index_dir_writable(app_configs, **kwargs):
    path = settings.IMAGESEARCH_INDEX_DIR
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return [Error(f"IMAGESEARCH_INDEX_DIR {path} cannot be created: {exc}", id="gallery.E001")]
    if not os.access(path, os.W_OK):
        return [Error(f"IMAGESEARCH_INDEX_DIR {path} is not writable.", id="gallery.E001")]
    return []


@register(Tags.compatibility)
def eager_in_production(app_configs, **kwargs):
    if settings.CELERY_TASK_ALWAYS_EAGER and not settings.DEBUG:
        return [
            Warning(
                "IMAGESEARCH_EAGER is on with DEBUG off: images are embedded inside web requests.",
                hint="Run Redis and a Celery worker, and unset IMAGESEARCH_EAGER.",
                id="gallery.W001",
            )
        ]
    return []


@register(Tags.compatibility)
def random_weights(app_configs, **kwargs):
    if settings.IMAGESEARCH_VGG16_WEIGHTS == "none" and not settings.DEBUG:
        return [
            Warning(
                "IMAGESEARCH_VGG16_WEIGHTS=none: the model runs with random weights; results find near-duplicates only.",
                hint="Use 'imagenet' or the path of the VGG16 notop weights file.",
                id="gallery.W002",
            )
        ]
    return []
