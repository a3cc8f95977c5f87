"""Embedding vectors as the database stores them: float32 little-endian bytes, unit length.

The width is the active backbone's (gallery.embedding.dim()); these helpers
take it from the data or from the caller, never from a constant.
"""

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

DTYPE = "<f4"
# Image.embedding as the database hands it back (PostgreSQL: memoryview, SQLite: bytes).
Blob: TypeAlias = bytes | memoryview


def pack(vector: npt.ArrayLike) -> bytes:
    """Return a (D,) vector as the bytes of Image.embedding."""
    return np.asarray(vector, dtype=DTYPE).reshape(-1).tobytes()


def unpack(blob: Blob) -> npt.NDArray[np.float32]:
    """Return Image.embedding bytes as a (D,) float32 array (read-only: a view of the bytes)."""
    return np.frombuffer(bytes(blob), dtype=DTYPE)


def matrix(blobs: Sequence[Blob], dim: int) -> npt.NDArray[np.float32]:
    """Return a list of Image.embedding values as one (N, dim) float32 array."""
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(bytes(b) for b in blobs), dtype=DTYPE).reshape(len(blobs), dim)


def cosine_distances(vectors: npt.NDArray[np.float32], query: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Return 1 - cos between each row of `vectors` (N, D) and `query` (D,) or (Q, D): all unit length.

    (N,) for one query, (Q, N) for several.
    """
    query = np.asarray(query, dtype=np.float32)
    if query.ndim == 1:
        return 1.0 - vectors @ query  # (N,)
    return 1.0 - query @ vectors.T  # (Q, N)
