"""The backbone registry: IMAGESEARCH_BACKBONE names the class, one instance per process.

A short name from BACKBONES, or the dotted path of a Backbone subclass
(as Wagtail names its rendition backends).
"""

import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from gallery.embedding.backbones.base import Backbone, WeightsUnavailable

BACKBONES = {
    "vgg16": "gallery.embedding.backbones.vgg16.VGG16",
    "resnet50": "gallery.embedding.backbones.resnet50.ResNet50",
    "inceptionv3": "gallery.embedding.backbones.inceptionv3.InceptionV3",
    "mobilenetv3": "gallery.embedding.backbones.mobilenetv3.MobileNetV3",
}

_lock = threading.Lock()
_active: Backbone | None = None

__all__ = ["BACKBONES", "Backbone", "WeightsUnavailable", "active", "backbone_class", "reset"]


def backbone_class(name: str) -> type[Backbone]:
    """Return the Backbone subclass `name` (a short name or a dotted path) names; ImproperlyConfigured if none."""
    path = BACKBONES.get(name, name)
    try:
        cls = import_string(path)
    except ImportError as exc:
        known = ", ".join(sorted(BACKBONES))
        raise ImproperlyConfigured(
            f"IMAGESEARCH_BACKBONE={name!r} names no backbone (known: {known}, or a dotted path): {exc}"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Backbone)):
        raise ImproperlyConfigured(f"IMAGESEARCH_BACKBONE={name!r} is not a Backbone subclass.")
    return cls


def active() -> Backbone:
    """Return this process's instance of the configured backbone (created on first use; the model loads later)."""
    global _active
    with _lock:
        if _active is None:
            cls = backbone_class(settings.IMAGESEARCH_BACKBONE)
            _active = cls(weights=getattr(settings, cls.weights_setting), seed=settings.IMAGESEARCH_RANDOM_SEED)
        return _active


def reset() -> None:
    """Forget the instance (and with it the loaded model), e.g. after a settings change."""
    global _active
    with _lock:
        _active = None
