"""System checks for settings that are valid one by one but wrong together."""

import os

import django
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured


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
    # The active backbone's weights setting (IMAGESEARCH_VGG16_WEIGHTS, IMAGESEARCH_MOBILENETV3_WEIGHTS...).
    from gallery.embedding import backbones

    try:
        setting, weights = backbones.active_weights()
    except ImproperlyConfigured:
        return []  # backbone_registered reports it
    if weights == "none" and not settings.DEBUG:
        return [
            Warning(
                f"{setting}=none: the model runs with random weights; results find near-duplicates only.",
                hint=f"Set {setting} to 'imagenet' or the path of the backbone's notop weights file.",
                id="gallery.W002",
            )
        ]
    return []


@register(Tags.compatibility)
def backbone_registered(app_configs, **kwargs):
    from gallery.embedding import backbones

    try:
        cls = backbones.backbone_class(settings.IMAGESEARCH_BACKBONE)
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="gallery.E002")]
    weights = getattr(settings, cls.weights_setting, None)
    try:
        # The backbone's own test; building the instance loads no model.
        cls(weights=weights, seed=settings.IMAGESEARCH_RANDOM_SEED).check_weights_file()
    except backbones.WeightsUnavailable as exc:
        return [Error(f"{cls.weights_setting}={weights!r}: {exc}", id="gallery.E003")]
    return []


@register(Tags.compatibility)
def reads_written_for_this_django(app_configs, **kwargs):
    # gallery.search.reads uses Django's PostgreSQL server-binding cursor and
    # DatabaseWrapper._prepare_cursor, which are not public API.
    from gallery.search import reads

    if django.VERSION[:2] != reads.DJANGO_VERSION:
        return [
            Warning(
                f"gallery.search.reads was written for Django {'.'.join(map(str, reads.DJANGO_VERSION))} "
                f"and this is {django.get_version()}: its private cursor API may have changed.",
                hint="Run the test suite on PostgreSQL, then update reads.DJANGO_VERSION.",
                id="gallery.W003",
            )
        ]
    return []


@register(Tags.compatibility)
def precision_supported(app_configs, **kwargs):
    # bf16 asked for on a CPU without bfloat16 instructions runs fp32: say so, do not fail.
    from gallery.embedding.backbones import precision

    error, warning = precision.check_messages()
    if error:
        return [Error(error, id="gallery.E004")]
    if warning:
        return [
            Warning(
                warning,
                hint="Set IMAGESEARCH_PRECISION=auto (or fp32) on this machine; bf16 needs avx512_bf16 or AMX.",
                id="gallery.W005",
            )
        ]
    return []


@register(Tags.compatibility)
def map_method_available(app_configs, **kwargs):
    # The index worker lays maps out; a missing package fails each map with this same reason.
    from gallery.analysis import layout

    reason = layout.unavailable_reason(settings.IMAGESEARCH_MAP_METHOD)
    if reason:
        return [Warning(reason, hint="Maps fail until it is installed.", id="gallery.W004")]
    return []
