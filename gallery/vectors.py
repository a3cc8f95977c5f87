"""Embedding vectors as the database stores them: float32 little-endian bytes, unit length.

The width is the active backbone's (gallery.embedding.dim()); these helpers
take it from the data or from the caller, never from a constant.
"""

import numpy as np

DTYPE = "<f4"


def pack(vector):
    """Return a (D,) vector as the bytes of Image.embedding."""
    return np.asarray(vector, dtype=DTYPE).reshape(-1).tobytes()


def unpack(blob):
    """Return Image.embedding bytes as a (D,) float32 array (read-only: a view of the bytes)."""
    return np.frombuffer(bytes(blob), dtype=DTYPE)


def matrix(blobs, dim):
    """Return a list of Image.embedding values as one (N, dim) float32 array."""
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(bytes(b) for b in blobs), dtype=DTYPE).reshape(len(blobs), dim)


def cosine_distances(vectors, query):
    """Return 1 - cos between each row of `vectors` (N, D) and `query` (D,) or (Q, D): all unit length.

    (N,) for one query, (Q, N) for several.
    """
    query = np.asarray(query, dtype=np.float32)
    if query.ndim == 1:
        return 1.0 - vectors @ query  # (N,)
    return 1.0 - query @ vectors.T  # (Q, N)
