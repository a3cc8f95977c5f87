"""The backbone registry: IMAGESEARCH_BACKBONE names the class, one instance per process.

A short name from BACKBONES, or the dotted path of a Backbone subclass
(as Wagtail names its rendition backends).

During a switch of backbone (or of its weights) the galleries still serve the
previous embedding version, and outside pictures searched in them must be
embedded with it: for_version() rebuilds the backbone a version string names
(its pipeline_id, then 'imagenet', 'random-seed<N>' or 'file-<digest>').
"""

import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from gallery.embedding.backbones import precision
from gallery.embedding.backbones.base import Backbone, WeightsUnavailable

BACKBONES = {
    "vgg16": "gallery.embedding.backbones.vgg16.VGG16",
    "resnet50": "gallery.embedding.backbones.resnet50.ResNet50",
    "inceptionv3": "gallery.embedding.backbones.inceptionv3.InceptionV3",
    "mobilenetv3": "gallery.embedding.backbones.mobilenetv3.MobileNetV3",
}

_lock = threading.Lock()
_active: Backbone | None = None
_by_version: dict[str, Backbone] = {}  # other versions' instances, built on demand
_resolved: dict[str, type[Backbone]] = {}  # dotted paths resolved in this process, for for_version()

__all__ = [
    "BACKBONES",
    "Backbone",
    "WeightsUnavailable",
    "active",
    "active_weights",
    "backbone_class",
    "class_for_version",
    "for_version",
    "reset",
]


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
    _resolved[path] = cls
    return cls


def _known_classes() -> list[type[Backbone]]:
    classes = [backbone_class(name) for name in BACKBONES]
    classes.extend(cls for cls in list(_resolved.values()) if cls not in classes)
    try:
        configured = backbone_class(settings.IMAGESEARCH_BACKBONE)
    except ImproperlyConfigured:
        return classes
    return classes if configured in classes else [*classes, configured]


def class_for_version(version: str) -> type[Backbone] | None:
    """Return the Backbone subclass whose pipeline_id starts `version`, or None (loads no model)."""
    matches = [cls for cls in _known_classes() if version.startswith(cls.pipeline_id + "/")]
    return max(matches, key=lambda cls: len(cls.pipeline_id)) if matches else None


def _at_precision(instance: Backbone, int8: bool) -> Backbone:
    if hasattr(instance, "precision"):  # the Keras backbones; others have one arithmetic
        instance.precision = precision.for_version(int8)
    return instance


def for_version(version: str) -> Backbone:
    """Return an instance that embeds in `version` (the active one, or one built for it).

    Raise WeightsUnavailable, with what to set, when no known backbone has that
    pipeline_id, or the version was made with a weights file that the
    backbone's weights setting no longer names.
    """
    current = active()
    if current.version_id() == version:
        return current
    with _lock:
        known = _by_version.get(version)
    if known is not None:
        return known
    cls = class_for_version(version)
    if cls is None:
        raise WeightsUnavailable(f"No known backbone embeds in version {version!r}.")
    # An int8 version ends in '/int8' (precision.version_suffix): its instance runs int8, any other not.
    ident, int8 = precision.split_ident(version[len(cls.pipeline_id) + 1 :])
    seed = settings.IMAGESEARCH_RANDOM_SEED
    if ident == "imagenet":
        weights = "imagenet"
    elif ident.startswith("random-seed") and ident[len("random-seed") :].lstrip("-").isdigit():
        weights, seed = "none", int(ident[len("random-seed") :])
    else:
        weights = getattr(settings, cls.weights_setting, "")
        instance = _at_precision(cls(weights=weights, seed=seed), int8)
        try:
            matches = ident.startswith("file-") and instance.version_id() == version
        except OSError:
            matches = False
        if not matches:
            raise WeightsUnavailable(
                f"Version {version} was embedded with a {cls.name} weights file that "
                f"{cls.weights_setting} ({weights!r}) no longer names."
            )
    instance = _at_precision(cls(weights=weights, seed=seed), int8)
    with _lock:
        return _by_version.setdefault(version, instance)


def active_weights() -> tuple[str, str]:
    """Return (the configured backbone's weights setting, its value), e.g. ('IMAGESEARCH_VGG16_WEIGHTS', 'none').

    Loads no model; raises ImproperlyConfigured when IMAGESEARCH_BACKBONE names none.
    """
    cls = backbone_class(settings.IMAGESEARCH_BACKBONE)
    return cls.weights_setting, str(getattr(settings, cls.weights_setting, ""))


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
        _by_version.clear()
