"""What every embedding backbone provides, and the weights policy they share."""

import abc
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


class WeightsUnavailable(RuntimeError):
    """The configured weights cannot be loaded; the message says what to set."""


def file_digest(path: str) -> str:
    """Return the first 16 hex digits of the sha256 of a weights file (its identity in a version)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


class Backbone(abc.ABC):
    """An image model that turns (S, S, 3) RGB arrays into unit vectors of `dim` floats.

    `weights` is 'imagenet' (downloaded once by Keras and cached), 'none'
    (seeded random weights: the real model, meaningful for near-duplicates
    only) or the path of a local weights file. Subclasses load their model
    lazily, on first use, and never at import.
    """

    name: str  # short name, as IMAGESEARCH_BACKBONE spells it
    dim: int  # width of a vector
    input_size: int  # side of the square model input
    # Identity of everything but the weights (architecture, pooling, resizing):
    # a change here must re-embed everything.
    pipeline_id: str
    weights_setting: str  # the setting that names the weights: 'imagenet', 'none' or a file

    def __init__(self, *, weights: str, seed: int) -> None:
        self.weights = weights
        self.seed = seed
        self._version: str | None = None

    def version_id(self) -> str:
        """Return the embedding version: vectors of different versions are never compared or indexed together."""
        if self._version is None:
            if self.weights == "imagenet":
                ident = "imagenet"
            elif self.weights == "none":
                ident = f"random-seed{self.seed}"
            else:
                ident = f"file-{file_digest(self.weights)}"
            self._version = f"{self.pipeline_id}/{ident}"
        return self._version

    def check_weights_file(self) -> None:
        """Raise WeightsUnavailable when the weights name a file that does not exist."""
        if self.weights not in {"imagenet", "none"} and not Path(self.weights).is_file():
            raise WeightsUnavailable(f"{self.name} weights file {self.weights} does not exist.")

    @abc.abstractmethod
    def preprocess(self, batch: Any) -> Any:
        """Map a (B, S, S, 3) float32 RGB batch in 0..255 to the model's input (inside its compiled graph).

        `batch` is whatever the backbone's framework computes with (a TensorFlow
        tensor, a numpy array), hence untyped.
        """

    @abc.abstractmethod
    def load(self) -> None:
        """Load the model now (a worker does this at start, so a weights problem shows at once)."""

    @abc.abstractmethod
    def embed_batch(self, arrays: Sequence[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
        """Embed (S, S, 3) float32 RGB arrays in 0..255; return (len(arrays), dim) float32 unit vectors."""
