"""Embeddings of the active backbone: the facade everything else calls.

    from gallery import embedding
    vectors = embedding.embed_batch(arrays)   # (N, embedding.dim()) unit vectors
    embedding.version()                       # stored with every vector

Tests may swap these attributes (embed_batch, version) to run without the model.

While the site switches backbone, a gallery keeps serving the version of its
current index build (served_version); the *_of / embed_batch_as helpers work
in any version, building the old backbone from its version string.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from gallery.embedding.backbones import WeightsUnavailable, active, class_for_version, for_version, reset

if TYPE_CHECKING:
    from gallery.models import Gallery

__all__ = [
    "WeightsUnavailable",
    "backbone_name",
    "dim",
    "dim_of",
    "embed_batch",
    "embed_batch_as",
    "input_size",
    "input_size_of",
    "load",
    "reset",
    "served_version",
    "version",
]


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


def served_version(gallery: "Gallery") -> str:
    """Return the version `gallery` serves: its current build's, else (no build yet) the active one.

    During a switch this is the previous version until the gallery's index of
    the active version is built and made current (gallery.services.indexing).
    """
    build = gallery.current_build()
    if build is not None and build.embedding_version:
        return str(build.embedding_version)
    return version()


def dim_of(version_id: str) -> int:
    """Return the vector width of `version_id` (known from its backbone class: no model is loaded)."""
    if version_id == version():
        return dim()
    cls = class_for_version(version_id)
    return cls.dim if cls is not None else dim()


def input_size_of(version_id: str) -> int:
    """Return the side of the square input the backbone of `version_id` takes."""
    if version_id == version():
        return input_size()
    cls = class_for_version(version_id)
    return cls.input_size if cls is not None else input_size()


def backbone_name(version_id: str) -> str:
    """Return the short name of the backbone of `version_id` ('vgg16'), or the version itself when unknown."""
    cls = class_for_version(version_id)
    return cls.name if cls is not None else version_id


def embed_batch_as(version_id: str, arrays: Sequence[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
    """Embed in `version_id`: the active backbone's embed_batch, or the backbone built for that version.

    Raise WeightsUnavailable when that version's backbone cannot be built or loaded.
    """
    if version_id == version():
        return embed_batch(arrays)
    return for_version(version_id).embed_batch(arrays)
