"""Reduced precision for the Keras backbones: which one this CPU runs, and how a model is built for it.

IMAGESEARCH_PRECISION:

- `auto` (default): bf16 where the CPU has bfloat16 dot products (the
  `avx512_bf16` or `amx_bf16` flag in /proc/cpuinfo), fp32 elsewhere.
- `fp32`: the model as Keras builds it.
- `bf16`: asked for on a CPU without those flags it runs fp32 (a system check
  warns): oneDNN would emulate bfloat16 there, slower than fp32.
- `int8`: opt-in.

How each mode runs (bench/embed.py measured the alternatives; docs/benchmarks.md,
"Reduced precision"):

- bf16: the Keras model cloned with the `mixed_bfloat16` dtype policy, so
  convolutions and matrix products run in bfloat16 through oneDNN's
  avx512_bf16 kernels while the weights stay float32. Global pooling and the
  normalisation stay float32. TensorFlow's graph rewrite
  (`auto_mixed_precision_onednn_bfloat16`) was about half as fast here.
- int8: TFLite dynamic-range quantisation (int8 weights, activations quantised
  batch by batch as the model runs) of the embedding (preprocess and model,
  normalisation in numpy), run by TFLite's XNNPACK delegate on one thread per core.
  Full-integer quantisation with a calibration set was slower here and
  quantises the output vector too.

Every mode returns float32 unit vectors. bf16 vectors keep fp32's embedding
version (measured: the 10 nearest neighbours of a vector are, to >= 0.99, the
same), so a gallery is never split by the CPU it was embedded on. int8 is a
looser approximation: its vectors carry their own version (suffix "/int8"), so
turning it on or off re-embeds beside the served vectors, as a backbone switch.
"""

import logging
import os
import threading
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

SETTING = "IMAGESEARCH_PRECISION"
CHOICES = ("auto", "fp32", "bf16", "int8")
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
INT8_SUFFIX = "/int8"
CPUINFO = Path("/proc/cpuinfo")

__all__ = [
    "BF16_FLAGS",
    "CHOICES",
    "INT8_SUFFIX",
    "Resolved",
    "compile_embedding",
    "configured",
    "cpu_flags",
    "for_version",
    "prepare",
    "resolve",
    "split_ident",
    "version_suffix",
]


def cpu_flags(path: Path = CPUINFO) -> frozenset[str]:
    """Return the CPU's feature flags as the kernel reports them (empty where there is no /proc/cpuinfo)."""
    try:
        text = path.read_text()
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    return frozenset(flags)


@dataclass(frozen=True)
class Resolved:
    """The precision a process computes at: `mode` is what runs, `requested` what the setting says."""

    requested: str
    mode: str  # fp32, bf16 or int8
    reason: str  # one line for the log and the admin

    def __str__(self) -> str:
        return self.mode if self.requested in {self.mode, "auto"} else f"{self.mode} ({self.requested} asked for)"


def resolve(value: str, flags: Collection[str] | None = None) -> Resolved:
    """Resolve a setting value against the CPU's flags (read from /proc/cpuinfo when None).

    Raise ImproperlyConfigured when `value` is not one of CHOICES.
    """
    requested = (value or "auto").strip().lower()
    if requested not in CHOICES:
        raise ImproperlyConfigured(f"{SETTING}={value!r} is not a precision: use one of {', '.join(CHOICES)}.")
    if requested in {"fp32", "int8"}:
        return Resolved(requested, requested, f"{SETTING}={requested}")
    have = sorted(BF16_FLAGS & set(cpu_flags() if flags is None else flags))
    if have:
        return Resolved(requested, "bf16", f"the CPU has {', '.join(have)}")
    if requested == "auto":
        return Resolved(requested, "fp32", "the CPU has no bfloat16 instructions (avx512_bf16, amx_bf16)")
    return Resolved(
        requested,
        "fp32",
        f"{SETTING}=bf16 but the CPU has no bfloat16 instructions (avx512_bf16, amx_bf16): running fp32",
    )


_cache: dict[str, Resolved] = {}
_cache_lock = threading.Lock()


def configured() -> Resolved:
    """Return the resolved IMAGESEARCH_PRECISION of this process (the CPU is read once per value)."""
    value = getattr(settings, SETTING, "auto")
    with _cache_lock:
        known = _cache.get(value)
        if known is None:
            known = _cache[value] = resolve(value)
        return known


def version_suffix(mode: str) -> str:
    """Return what `mode` adds to an embedding version: fp32 and bf16 share one, int8 has its own."""
    return INT8_SUFFIX if mode == "int8" else ""


def split_ident(ident: str) -> tuple[str, bool]:
    """Split a version's weights part ('imagenet/int8') into ('imagenet', True); ('imagenet', False) without."""
    if ident.endswith(INT8_SUFFIX):
        return ident[: -len(INT8_SUFFIX)], True
    return ident, False


def for_version(int8: bool) -> Resolved:
    """Return the precision that embeds in a version with (int8) or without the int8 suffix.

    Without it: the configured precision, or auto's choice when int8 is
    configured (a gallery still serving its earlier vectors during the switch).
    """
    if int8:
        return Resolved("int8", "int8", "the embedding version is an int8 one")
    current = configured()
    if current.mode != "int8":
        return current
    return resolve("auto")


# --- Building and compiling (TensorFlow and Keras are imported only from here on) ---


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# Layers kept float32 in a bf16 model: the global pooling averages (or maxes)
# the last feature map into the vector, and an average over 49+ positions is
# both cheap and where bfloat16's 8-bit mantissa would cost the most.
_FLOAT32_LAYERS = ("GlobalAveragePooling2D", "GlobalMaxPooling2D")


def _bf16_twin(model: Any, keras: ModuleType) -> Any:
    """Return a copy of `model` whose layers compute in bfloat16 (weights kept float32), same weights."""

    def clone(layer: Any) -> Any:
        config = layer.get_config()
        # Bare operations in a functional graph (MobileNetV3's `x + 3`) have no dtype
        # policy: they compute in the dtype of their bfloat16 inputs.
        if isinstance(layer, keras.layers.Layer) and type(layer).__name__ not in _FLOAT32_LAYERS:
            config["dtype"] = "mixed_bfloat16"
        return type(layer).from_config(config)

    twin = keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())
    return twin


@dataclass
class _Int8:
    """A TFLite int8 (dynamic-range) flatbuffer of the whole embedding, any batch size."""

    blob: bytes
    side: int


def _int8_blob(model: Any, preprocess: Callable[[Any], Any], side: int) -> bytes:
    """Convert preprocess -> model to a TFLite flatbuffer with int8 weights (normalisation is left to numpy)."""
    import tensorflow as tf

    # The weights as graph constants (stateless_call): the converter quantises
    # constants, and leaves variables as unreadable resource reads.
    trainable = [tf.constant(v.numpy()) for v in model.trainable_variables]
    non_trainable = [tf.constant(v.numpy()) for v in model.non_trainable_variables]

    @tf.function(input_signature=[tf.TensorSpec((None, side, side, 3), tf.float32)])
    def run(x: Any) -> Any:
        feats, _ = model.stateless_call(trainable, non_trainable, preprocess(x), training=False)
        return tf.cast(feats, tf.float32)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([run.get_concrete_function()])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]  # without a representative set: dynamic range
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        blob: bytes = converter.convert()
    return blob


class _Int8Runner:
    """One TFLite interpreter at a fixed batch size; calls are serialised (an interpreter is not thread-safe)."""

    def __init__(self, prepared: _Int8, batch: int) -> None:
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's notice that LiteRT will take it over
            self._interpreter = tf.lite.Interpreter(model_content=prepared.blob, num_threads=_cores())
        inp = self._interpreter.get_input_details()[0]
        self._in = inp["index"]
        self._interpreter.resize_tensor_input(self._in, [batch, prepared.side, prepared.side, 3])
        self._interpreter.allocate_tensors()
        self._out = self._interpreter.get_output_details()[0]["index"]
        self._lock = threading.Lock()

    def __call__(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        with self._lock:
            self._interpreter.set_tensor(self._in, np.ascontiguousarray(x, dtype=np.float32))
            self._interpreter.invoke()
            feats: npt.NDArray[np.float32] = self._interpreter.get_tensor(self._out).copy()  # (B, dim)
        # Normalised here, not in the flatbuffer: TFLite's L2_NORMALIZATION has a fixed
        # floor that leaves the tiny pooled norms of some random-weight networks
        # (MobileNetV3, about 1e-9) unscaled.
        norms = np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-30)  # (B, 1)
        return (feats / norms).astype(np.float32)


def prepare(model: Any, preprocess: Callable[[Any], Any], *, side: int, resolved: Resolved, label: str = "") -> Any:
    """Return what compile_embedding compiles for `resolved`: the model itself, its bf16 twin, or an int8 flatbuffer.

    Logs the precision once, as the model loads (a worker loads it at start).
    """
    logger.info("%s embeds at %s precision: %s", label or type(model).__name__, resolved.mode, resolved.reason)
    if resolved.mode == "bf16":
        import keras

        return _bf16_twin(model, keras)
    if resolved.mode == "int8":
        return _Int8(_int8_blob(model, preprocess, side), side)
    return model


def compile_embedding(
    prepared: Any, preprocess: Callable[[Any], Any], *, batch: int, side: int
) -> Callable[[npt.NDArray[np.float32]], Any]:
    """Compile the whole embedding of a (batch, side, side, 3) float32 batch in 0..255 to (batch, dim) unit vectors.

    `prepared` comes from prepare(). The result returns a tensor or an array:
    np.asarray() of it is (batch, dim) float32.
    """
    if isinstance(prepared, _Int8):
        return _Int8Runner(prepared, batch)
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((batch, side, side, 3), tf.float32)])
    def run(x: Any) -> Any:
        feats = prepared(preprocess(x), training=False)  # (B, dim), float32 in both modes (pooling is)
        # A tiny floor, not the default 1e-12: with random weights some networks
        # (MobileNetV3) pool to norms near 1e-9, which the default would not scale to 1.
        return tf.math.l2_normalize(tf.cast(feats, tf.float32), axis=1, epsilon=1e-30)

    return run


def check_messages() -> tuple[str | None, str | None]:
    """Return (error, warning) about the setting for the system checks; None where there is nothing to say."""
    try:
        resolved = configured()
    except ImproperlyConfigured as exc:
        return str(exc), None
    if resolved.requested == "bf16" and resolved.mode == "fp32":
        return None, resolved.reason
    return None, None
