"""VGG16: the one module that imports TensorFlow/Keras.

VGG16 without its classifier, global average pooling over the last conv block,
giving a (512,) float32 vector per image, L2-normalised so cosine similarity is
a dot product. The model loads lazily, once per process, on first use.
"""

import logging
import os
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
from django.conf import settings

from gallery.embedding.backbones.base import Backbone, WeightsUnavailable

logger = logging.getLogger(__name__)


def _configure_threads(tf: ModuleType) -> None:
    # One process owns the CPU: let a single op use every core, and run ops one
    # at a time (VGG16 is a chain, inter-op parallelism buys nothing).
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(cores)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised in this process


def batch_shapes(size: int) -> list[int]:
    """Return the batch sizes the model is compiled for: powers of two below `size`, and `size`.

    A short batch is padded up to the next of these, so at most half of a
    padded batch is wasted work, and only a handful of graphs are ever traced.
    """
    shapes: list[int] = []
    b = 1
    while b < size:
        shapes.append(b)
        b *= 2
    return shapes + [size]


class VGG16(Backbone):
    name = "vgg16"
    dim = 512
    input_size = 224
    pipeline_id = "vgg16-avgpool-l2/caffe-224-squash-bilinear"
    weights_setting = "IMAGESEARCH_VGG16_WEIGHTS"

    def __init__(self, *, weights: str, seed: int) -> None:
        super().__init__(weights=weights, seed=seed)
        self._lock = threading.Lock()
        # TensorFlow and Keras ship no type information: the model and the
        # compiled functions are typed as what they are used for.
        self._model: tuple[Any, ModuleType, ModuleType] | None = None  # (model, tf, keras) once built
        self._runners: dict[int, Callable[[npt.NDArray[np.float32]], Any]] = {}  # batch size -> compiled function

    def _build_model(self) -> tuple[Any, ModuleType, ModuleType]:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras
        import tensorflow as tf

        _configure_threads(tf)
        if self.weights == "none":
            logger.warning(
                "IMAGESEARCH_VGG16_WEIGHTS=none: VGG16 runs with seeded random weights. "
                "Similarity is only meaningful for near-duplicates; use 'imagenet' or a weights file for real search."
            )
            keras.utils.set_random_seed(self.seed)
            keras_weights = None
        elif self.weights == "imagenet":
            keras_weights = "imagenet"
        else:
            self.check_weights_file()
            keras_weights = self.weights
        try:
            model = keras.applications.VGG16(
                include_top=False,
                weights=keras_weights,
                input_shape=(self.input_size, self.input_size, 3),
                pooling="avg",
            )
        except Exception as exc:  # download errors, bad h5 files: each surfaces differently
            if self.weights == "imagenet":
                raise WeightsUnavailable(
                    "VGG16 ImageNet weights could not be downloaded "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
                    "On a machine without internet, set IMAGESEARCH_VGG16_WEIGHTS to the path of "
                    "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5, or to 'none' for random weights (demo only)."
                ) from exc
            raise WeightsUnavailable(f"VGG16 weights file {self.weights} could not be loaded: {exc}") from exc
        return model, tf, keras

    def preprocess(self, batch: Any) -> Any:
        import keras

        return keras.applications.vgg16.preprocess_input(batch)  # RGB 0..255 -> BGR, ImageNet means subtracted

    def _runner(self, batch: int) -> Callable[[npt.NDArray[np.float32]], Any]:
        """Return a compiled function for a fixed batch size (traced once per size)."""
        with self._lock:
            if self._model is None:
                self._model = self._build_model()
            model, tf, _keras = self._model
            runner = self._runners.get(batch)
            if runner is None:
                side = self.input_size

                @tf.function(input_signature=[tf.TensorSpec((batch, side, side, 3), tf.float32)])
                def run(x: Any) -> Any:
                    feats = model(self.preprocess(x), training=False)  # (B, 512)
                    return tf.math.l2_normalize(feats, axis=1)

                runner = self._runners[batch] = run
        return runner

    def load(self) -> None:
        self._runner(1)

    def embed_batch(self, arrays: Sequence[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
        """Embed images given as (224, 224, 3) float32 RGB arrays in 0..255.

        Return a (len(arrays), 512) float32 array of unit vectors. Batches run at
        the fixed shapes of batch_shapes(IMAGESEARCH_EMBED_BATCH_SIZE), the last
        one zero-padded (rows are independent: padding does not change a vector).
        """
        n = len(arrays)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        size = settings.IMAGESEARCH_EMBED_BATCH_SIZE
        shapes = batch_shapes(size)
        side = self.input_size
        out = np.empty((n, self.dim), dtype=np.float32)
        for start in range(0, n, size):
            chunk = np.stack(arrays[start : start + size]).astype(np.float32, copy=False)  # (b, 224, 224, 3)
            b = chunk.shape[0]
            shape = next(s for s in shapes if s >= b)
            if b < shape:
                chunk = np.concatenate(
                    [chunk, np.zeros((shape - b, side, side, 3), np.float32)]
                )  # (shape, 224, 224, 3)
            out[start : start + b] = self._runner(shape)(chunk).numpy()[:b]  # (b, 512)
        return out
