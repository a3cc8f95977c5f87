"""Embeddings of the active backbone: the facade everything else calls.

    from gallery import embedding
    vectors = embedding.embed_batch(arrays)   # (N, embedding.dim()) unit vectors
    embedding.version()                       # stored with every vector

Tests may swap these attributes (embed_batch, version) to run without the model.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from gallery.embedding.backbones import WeightsUnavailable, active, reset

__all__ = ["WeightsUnavailable", "dim", "embed_batch", "input_size", "load", "reset", "version"]


def embed_batch(arrays: Sequence[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
    """Embed (S, S, 3) float32 RGB arrays in 0..255 (S = input_size()); return (N, dim()) float32 unit vectors."""
    return active().embed_batch(arrays)


def version() -> str:
    """Return the embedding version of the configured backbone and weights."""
    return active().version_id()


def dim() -> int:
    """Return the width of a vector of the active backbone."""
    return active().dim


def input_size() -> int:
    """Return the side of the square input the active backbone takes."""
    return active().input_size


def load() -> None:
    """Load the model now; raise WeightsUnavailable with a readable reason if it cannot be."""
    active().load()
