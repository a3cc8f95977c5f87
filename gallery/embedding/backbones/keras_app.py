"""The shared body of every keras.applications backbone: the one place a Keras model is built and compiled.

A subclass names its application (VGG16, ResNet50...), its vector width, input
side, identity and weights setting, and its preprocessing; this base does the
rest: thread configuration, the weights policy ('imagenet' / 'none' / a local
file) with readable WeightsUnavailable errors, lazy loading once per process,
and one compiled function per fixed batch shape (preprocess -> model with
global average pooling -> L2 normalisation, all inside the graph).
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

from gallery.embedding.backbones import precision
from gallery.embedding.backbones.base import Backbone, WeightsUnavailable

logger = logging.getLogger(__name__)


def configure_threads(tf: ModuleType) -> None:
    # One process owns the CPU: let a single op use every core, and run ops one
    # at a time (these networks are chains, inter-op parallelism buys little).
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


class KerasBackbone(Backbone):
    """A keras.applications network without its classifier, average-pooled, vectors L2-normalised."""

    label: str  # as the network is spelled in messages: "VGG16"
    application: str  # the keras.applications constructor: "VGG16", "ResNet50"...
    weights_file_hint: str  # the file Keras would download, named in the offline advice

    def __init__(self, *, weights: str, seed: int) -> None:
        super().__init__(weights=weights, seed=seed)
        self._lock = threading.Lock()
        # TensorFlow and Keras ship no type information: the model and the
        # compiled functions are typed as what they are used for.
        self._model: tuple[Any, ModuleType, ModuleType] | None = None  # (model, tf, keras) once built
        self._runners: dict[int, Callable[[npt.NDArray[np.float32]], Any]] = {}  # batch size -> compiled function
        # fp32, bf16 or int8 (gallery.embedding.backbones.precision); backbones.for_version
        # pins it to the version an instance embeds in.
        self.precision = precision.configured()

    def version_id(self) -> str:
        # bf16 shares fp32's version; int8 vectors have their own (precision.version_suffix).
        return super().version_id() + precision.version_suffix(self.precision.mode)

    def application_kwargs(self) -> dict[str, Any]:
        """Extra arguments for the keras.applications constructor (a subclass may add some)."""
        return {}

    def _keras_weights(self, keras: ModuleType) -> str | None:
        """Apply the weights policy: return what Keras is given as `weights`."""
        if self.weights == "none":
            logger.warning(
                "%s=none: %s runs with seeded random weights. Similarity is only meaningful for "
                "near-duplicates; use 'imagenet' or a weights file for real search.",
                self.weights_setting,
                self.label,
            )
            keras.utils.set_random_seed(self.seed)
            return None
        if self.weights == "imagenet":
            return "imagenet"
        self.check_weights_file()
        return self.weights

    def _build_model(self) -> tuple[Any, ModuleType, ModuleType]:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras
        import tensorflow as tf

        configure_threads(tf)
        keras_weights = self._keras_weights(keras)
        try:
            model = getattr(keras.applications, self.application)(
                include_top=False,
                weights=keras_weights,
                input_shape=(self.input_size, self.input_size, 3),
                pooling="avg",
                **self.application_kwargs(),
            )
        except Exception as exc:  # download errors, bad h5 files: each surfaces differently
            if self.weights == "imagenet":
                first = (str(exc).splitlines() or [""])[0][:200]
                raise WeightsUnavailable(
                    f"{self.label} ImageNet weights could not be downloaded ({type(exc).__name__}: {first}). "
                    f"On a machine without internet, set {self.weights_setting} to the path of "
                    f"{self.weights_file_hint}, or to 'none' for random weights (demo only)."
                ) from exc
            raise WeightsUnavailable(f"{self.label} weights file {self.weights} could not be loaded: {exc}") from exc
        prepared = precision.prepare(
            model, self.preprocess, side=self.input_size, resolved=self.precision, label=self.label
        )
        return prepared, tf, keras

    def _compile(self, model: Any, tf: ModuleType, batch: int) -> Callable[[npt.NDArray[np.float32]], Any]:
        """Trace the whole embedding (preprocess, model, normalisation) for one fixed batch size."""
        # `model` is what precision.prepare made of it: the model, its bf16 twin or an int8 flatbuffer.
        return precision.compile_embedding(model, self.preprocess, batch=batch, side=self.input_size)

    def _runner(self, batch: int) -> Callable[[npt.NDArray[np.float32]], Any]:
        """Return the compiled function for a fixed batch size (the model is built on first use)."""
        with self._lock:
            if self._model is None:
                self._model = self._build_model()
            model, tf, _keras = self._model
            runner = self._runners.get(batch)
            if runner is None:
                runner = self._runners[batch] = self._compile(model, tf, batch)
        return runner

    def load(self) -> None:
        self._runner(1)

    def embed_batch(self, arrays: Sequence[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
        """Embed images given as (S, S, 3) float32 RGB arrays in 0..255 (S = input_size).

        Return a (len(arrays), dim) float32 array of unit vectors. Batches run at
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
            chunk = np.stack(arrays[start : start + size]).astype(np.float32, copy=False)  # (b, S, S, 3)
            b = chunk.shape[0]
            shape = next(s for s in shapes if s >= b)
            if b < shape:
                chunk = np.concatenate([chunk, np.zeros((shape - b, side, side, 3), np.float32)])  # (shape, S, S, 3)
            out[start : start + b] = np.asarray(self._runner(shape)(chunk))[:b]  # (b, dim)
        return out


__all__ = ["KerasBackbone", "WeightsUnavailable", "batch_shapes", "configure_threads"]
