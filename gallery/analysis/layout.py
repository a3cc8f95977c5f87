"""The 2-D map of an index version: every item's (x, y), and the file that holds them.

Methods (IMAGESEARCH_MAP_METHOD):

- **pca** (default): the version's own first two principal components
  (the projection the index searches in, gallery.search.projection), so the
  map costs one (N, D) x (D, 2) product: deterministic, linear, well under a
  second at 100k items (docs/benchmarks.md, "Map layout").
- **tsne** (scikit-learn) and **umap** (umap-learn): neighbourhoods kept
  better, clusters drawn apart, at minutes per 100k items. Both are fitted on
  a seeded sample of at most NONLINEAR_SAMPLE items, in the version's
  INDEX_DIM projection (where its neighbours are found); every other item is
  placed at the distance-weighted mean of its PLACE_NEIGHBOURS nearest sampled
  items. t-SNE has no transform for new points, and this keeps both methods'
  cost bounded by the sample, whatever the gallery's size.

Coordinates are normalised: centred on (0.5, 0.5) and scaled alike on both
axes (the layout's aspect is kept) so the longer side spans [0, 1].

The file (FORMAT below) is what the coordinates endpoint serves, after it
drops the rows the viewer may not see; it sits beside the version's index
files (vNNNNNN.map.bin), so store.remove_versions deletes it with them.
"""

from __future__ import annotations

import importlib.util
import os
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from django.core.files import File
from django.core.files.storage import default_storage

from gallery.search import projection, store

METHODS = ("pca", "umap", "tsne")
# What each non-default method needs, as `pip install` names it.
PACKAGES = {"umap": ("umap", "umap-learn"), "tsne": ("sklearn", "scikit-learn")}
NONLINEAR_SAMPLE = 5_000  # t-SNE takes minutes at this size on two cores; the index queue waits meanwhile
PLACE_NEIGHBOURS = 8
PLACE_CHUNK = 2048  # items placed at a time: a (CHUNK, sample) distance block, 80 MB at the full sample

# The file: a 16-byte header, then N int64 image ids (sorted, the version's item
# order), then N (x, y) float32 pairs, all little-endian. The header: MAGIC (8
# bytes), N (uint32), and 4 reserved bytes (0). The ids start at byte 16 and the
# pairs at 16 + 8 N: both aligned for typed arrays in a browser.
MAGIC = b"ISMAP\x00\x01\x00"
HEADER = struct.Struct("<8sII")
SUFFIX = ".map.bin"


class LayoutUnavailable(Exception):
    """The method asked for cannot run here (its package is not installed); the message says what to install."""


class MapFileError(Exception):
    """A coordinates file is missing or damaged."""


def unavailable_reason(method: str) -> str | None:
    """Why `method` cannot run in this process (None: it can)."""
    if method not in METHODS:
        return f"IMAGESEARCH_MAP_METHOD={method!r} is not one of {', '.join(METHODS)}."
    if method in PACKAGES:
        module, package = PACKAGES[method]
        if importlib.util.find_spec(module) is None:
            return (
                f"IMAGESEARCH_MAP_METHOD={method} needs the Python package {package}, which is not installed: "
                f"`pip install {package}` in the index worker's environment, or set IMAGESEARCH_MAP_METHOD=pca."
            )
    return None


def normalise(xy: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Return (N, 2) float32 coordinates centred on (0.5, 0.5), the longer side spanning [0, 1], aspect kept."""
    xy = np.asarray(xy, dtype=np.float64)
    out = np.full((len(xy), 2), 0.5, dtype=np.float32)
    if not len(xy):
        return out
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = float((hi - lo).max())
    if not np.isfinite(span) or span <= 0:
        return out  # one point, or all in one place: the centre
    out[:] = (xy - (lo + hi) / 2) / span + 0.5
    return out


def layout(
    vectors: npt.NDArray[np.floating],
    method: str = "pca",
    *,
    seed: int = 0,
    pca: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """Return normalised (N, 2) float32 map coordinates of `vectors` ((N, D) unit vectors).

    `pca` is the version's (1 + INDEX_DIM, D) projection (store.Loaded.pca);
    without it one is fitted here, as a build does. Raise LayoutUnavailable
    when the method cannot run here.
    """
    reason = unavailable_reason(method)
    if reason:
        raise LayoutUnavailable(reason)
    n = len(vectors)
    if pca is None:
        pca = projection.fit_projection(np.asarray(vectors, dtype=np.float32), seed)
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32)
    if method == "pca" or n < 8:  # a handful of points: a nonlinear method has no neighbourhoods to keep
        return normalise(_project_chunked(pca[:3], vectors))
    reduced = _project_chunked(pca, vectors)  # (N, INDEX_DIM) float32: where the index finds neighbours
    rng = np.random.default_rng(seed)
    sample = np.arange(n) if n <= NONLINEAR_SAMPLE else np.sort(rng.choice(n, NONLINEAR_SAMPLE, replace=False))
    fitted = _fit_nonlinear(method, reduced[sample], seed)  # (S, 2)
    if len(sample) == n:
        return normalise(fitted)
    xy = np.empty((n, 2), dtype=np.float64)
    xy[sample] = fitted
    rest = np.setdiff1d(np.arange(n), sample, assume_unique=True)
    xy[rest] = _place(reduced[sample], fitted, reduced[rest])
    return normalise(xy)


def _project_chunked(pca: npt.NDArray[np.float32], vectors: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """projection.project() over (N, D) `vectors` 65536 rows at a time (a memory-mapped version stays mapped)."""
    out = np.empty((len(vectors), len(pca) - 1), dtype=np.float32)
    step = 65536
    for start in range(0, len(vectors), step):
        chunk = np.asarray(vectors[start : start + step], dtype=np.float32)
        out[start : start + step] = projection.project(pca, chunk)
    return out


def _fit_nonlinear(method: str, points: npt.NDArray[np.float32], seed: int) -> npt.NDArray[np.float64]:
    n = len(points)
    if method == "tsne":
        from sklearn.manifold import TSNE

        # Perplexity must stay below the number of points; 30 is scikit-learn's default.
        perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
        model = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, n_jobs=1)
        return np.asarray(model.fit_transform(points), dtype=np.float64)
    # numba caches compiled code beside its modules unless told otherwise; where site-packages is not
    # writable (the Docker image runs as a user who does not own it) that fails the import.
    os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "imagesearch-numba"))
    import umap

    # A fixed random_state makes UMAP deterministic (it then runs on one thread).
    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed, init="spectral")
    return np.asarray(reducer.fit_transform(points), dtype=np.float64)


def _place(
    sample: npt.NDArray[np.float32], fitted: npt.NDArray[np.float64], rest: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    """(R, 2): each of `rest` at the inverse-distance-weighted mean of its PLACE_NEIGHBOURS nearest `sample` rows."""
    k = min(PLACE_NEIGHBOURS, len(sample))
    sample_sq = (sample.astype(np.float64) ** 2).sum(axis=1)  # (S,)
    out = np.empty((len(rest), 2), dtype=np.float64)
    for start in range(0, len(rest), PLACE_CHUNK):
        chunk = rest[start : start + PLACE_CHUNK]  # (C, d)
        d2 = sample_sq[None, :] - 2.0 * (chunk @ sample.T) + (chunk.astype(np.float64) ** 2).sum(axis=1)[:, None]
        near = np.argpartition(d2, k - 1, axis=1)[:, :k]  # (C, k)
        dist = np.sqrt(np.maximum(np.take_along_axis(d2, near, axis=1), 0.0))  # (C, k)
        weight = 1.0 / (dist + 1e-6)
        out[start : start + len(chunk)] = (fitted[near] * weight[:, :, None]).sum(axis=1) / weight.sum(axis=1)[:, None]
    return out


# --- The file -------------------------------------------------------------


def encode(ids: npt.ArrayLike, xy: npt.ArrayLike) -> bytes:
    """The bytes of a coordinates file of (N,) ids and (N, 2) coordinates."""
    ids = np.ascontiguousarray(ids, dtype="<i8")
    xy = np.ascontiguousarray(xy, dtype="<f4").reshape(len(ids), 2)
    return HEADER.pack(MAGIC, len(ids), 0) + ids.tobytes() + xy.tobytes()


def decode(data: bytes) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Return (ids (N,), xy (N, 2)) of a coordinates file's bytes. Raise MapFileError when they are not one."""
    if len(data) < HEADER.size:
        raise MapFileError("the coordinates file is truncated")
    magic, count, _reserved = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MapFileError("not a coordinates file")
    if len(data) != HEADER.size + count * 16:
        raise MapFileError(f"the coordinates file holds {len(data)} bytes, not {HEADER.size + count * 16}")
    ids = np.frombuffer(data, dtype="<i8", count=count, offset=HEADER.size).astype(np.int64)
    xy = np.frombuffer(data, dtype="<f4", count=2 * count, offset=HEADER.size + 8 * count).reshape(count, 2)
    return ids, xy.astype(np.float32)


def local_path(gallery_id: int, version: int) -> Path:
    return store.local_dir(gallery_id) / f"v{version:06d}{SUFFIX}"


def storage_name(gallery_id: int, version: int) -> str:
    return f"indexes/{gallery_id}/v{version:06d}{SUFFIX}"


@dataclass(frozen=True)
class Written:
    name: str  # the storage name (MapBuild.file)
    size_bytes: int


def write(gallery_id: int, version: int, ids: npt.ArrayLike, xy: npt.ArrayLike) -> Written:
    """Write a version's coordinates file (atomically) and publish it to storage. Safe to run twice."""
    data = encode(ids, xy)
    path = local_path(gallery_id, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=f"{SUFFIX}.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    name = storage_name(gallery_id, version)
    if not store.storage_is_local_cache():
        if default_storage.exists(name):
            default_storage.delete(name)
        with open(path, "rb") as fh:
            default_storage.save(name, File(fh))
    return Written(name=name, size_bytes=len(data))


def read(gallery_id: int, version: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Return (ids, xy) of a version's coordinates file, fetched from storage on first use. Raise MapFileError."""
    path = local_path(gallery_id, version)
    try:
        if not path.exists():
            name = storage_name(gallery_id, version)
            if store.storage_is_local_cache() or not default_storage.exists(name):
                raise MapFileError(f"{path.name} is missing")
            with default_storage.open(name, "rb") as src:
                data = src.read()
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".fetch.tmp")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        else:
            data = path.read_bytes()
    except MapFileError:
        raise
    except OSError as exc:
        raise MapFileError(f"{path.name} cannot be read: {exc}") from exc
    return decode(data)


def timed_layout(
    vectors: npt.NDArray[np.floating], method: str, *, seed: int, pca: npt.NDArray[np.float32] | None = None
) -> tuple[npt.NDArray[np.float32], float]:
    """layout() and the seconds it took."""
    started = time.perf_counter()
    xy = layout(vectors, method, seed=seed, pca=pca)
    return xy, time.perf_counter() - started
