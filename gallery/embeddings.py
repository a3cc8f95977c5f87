"""The one module that imports TensorFlow/Keras.

VGG16 without its classifier, global average pooling over the last conv block,
giving a (512,) float32 vector per image, L2-normalised so cosine similarity is
a dot product. The model loads lazily, once per process, on first use.

Everything else calls `embeddings.embed_batch(arrays)` and reads
`embeddings.version()`; tests may swap those attributes.
"""

import hashlib
import logging
import os
import threading
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.signals import setting_changed

logger = logging.getLogger(__name__)

DIM = 512
INPUT_SHAPE = (224, 224, 3)
# Identity of everything but the weights: a change here must re-embed everything.
PIPELINE_ID = "vgg16-avgpool-l2/caffe-224-squash-bilinear"

_lock = threading.Lock()
_model = None
_runners = {}
_version = None


class WeightsUnavailable(RuntimeError):
    """The configured VGG16 weights cannot be loaded; the message says what to set."""


def _weights_setting():
    return settings.IMAGESEARCH_VGG16_WEIGHTS


def _file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def version():
    """Return the embedding version string for the configured model and weights.

    Vectors of different versions are never compared or indexed together.
    """
    global _version
    if _version is None:
        weights = _weights_setting()
        if weights == "imagenet":
            ident = "imagenet"
        elif weights == "none":
            ident = f"random-seed{settings.IMAGESEARCH_RANDOM_SEED}"
        else:
            ident = f"file-{_file_digest(weights)}"
        _version = f"{PIPELINE_ID}/{ident}"
    return _version


def _configure_threads(tf):
    # One process owns the CPU: let a single op use every core, and run ops one
    # at a time (VGG16 is a chain, inter-op parallelism buys nothing).
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(cores)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised in this process


def _build_model():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    _configure_threads(tf)
    weights = _weights_setting()
    if weights == "none":
        logger.warning(
            "IMAGESEARCH_VGG16_WEIGHTS=none: VGG16 runs with seeded random weights. "
            "Similarity is only meaningful for near-duplicates; use 'imagenet' or a weights file for real search."
        )
        keras.utils.set_random_seed(settings.IMAGESEARCH_RANDOM_SEED)
        keras_weights = None
    elif weights == "imagenet":
        keras_weights = "imagenet"
    else:
        if not Path(weights).is_file():
            raise WeightsUnavailable(f"VGG16 weights file {weights} does not exist.")
        keras_weights = weights
    try:
        model = keras.applications.VGG16(
            include_top=False, weights=keras_weights, input_shape=INPUT_SHAPE, pooling="avg"
        )
    except Exception as exc:  # download errors, bad h5 files: each surfaces differently
        if weights == "imagenet":
            raise WeightsUnavailable(
                "VGG16 ImageNet weights could not be downloaded "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
                "On a machine without internet, set IMAGESEARCH_VGG16_WEIGHTS to the path of "
                "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5, or to 'none' for random weights (demo only)."
            ) from exc
        raise WeightsUnavailable(f"VGG16 weights file {weights} could not be loaded: {exc}") from exc
    return model, tf, keras


def _get_runner(batch):
    """Return a compiled function for a fixed batch size (traced once per size)."""
    global _model
    with _lock:
        if _model is None:
            _model = _build_model()
        model, tf, keras = _model
        runner = _runners.get(batch)
        if runner is None:
            preprocess = keras.applications.vgg16.preprocess_input

            @tf.function(input_signature=[tf.TensorSpec((batch, *INPUT_SHAPE), tf.float32)])
            def run(x):
                x = preprocess(x)  # RGB 0..255 -> BGR, ImageNet means subtracted
                feats = model(x, training=False)  # (B, 512)
                return tf.math.l2_normalize(feats, axis=1)

            runner = _runners[batch] = run
    return runner


def load():
    """Load the model now (a worker calls this at start so errors show at once)."""
    _get_runner(1)


def batch_shapes(size):
    """Return the batch sizes the model is compiled for: powers of two below `size`, and `size`.

    A short batch is padded up to the next of these, so at most half of a
    padded batch is wasted work, and only a handful of graphs are ever traced.
    """
    shapes, b = [], 1
    while b < size:
        shapes.append(b)
        b *= 2
    return shapes + [size]


def embed_batch(arrays):
    """Embed images given as (224, 224, 3) float32 RGB arrays in 0..255.

    Return a (len(arrays), 512) float32 array of unit vectors. Batches run at
    the fixed shapes of batch_shapes(IMAGESEARCH_EMBED_BATCH_SIZE), the last
    one zero-padded (rows are independent: padding does not change a vector).
    """
    n = len(arrays)
    if n == 0:
        return np.zeros((0, DIM), dtype=np.float32)
    size = settings.IMAGESEARCH_EMBED_BATCH_SIZE
    shapes = batch_shapes(size)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, size):
        chunk = np.stack(arrays[start : start + size]).astype(np.float32, copy=False)  # (b, 224, 224, 3)
        b = chunk.shape[0]
        shape = next(s for s in shapes if s >= b)
        if b < shape:
            chunk = np.concatenate([chunk, np.zeros((shape - b, *INPUT_SHAPE), np.float32)])  # (shape, 224, 224, 3)
        out[start : start + b] = _get_runner(shape)(chunk).numpy()[:b]  # (b, 512)
    return out


def _reset(*, setting, **kwargs):
    """Forget the model and version when the weights settings change (tests do that)."""
    global _model, _version
    if setting in {"IMAGESEARCH_VGG16_WEIGHTS", "IMAGESEARCH_RANDOM_SEED", "IMAGESEARCH_EMBED_BATCH_SIZE"}:
        with _lock:
            _model, _version = None, None
            _runners.clear()


setting_changed.connect(_reset)
