"""Index files: where they live, how they are built, published, fetched and verified.

One index per gallery and build version, six files:
  vNNNNNN.ann      the Annoy forest (gallery.search.ann) over the vectors
                   projected to INDEX_DIM dimensions by the version's PCA
  vNNNNNN.ids.npy  (N,) int64, sorted: Annoy ids must be dense ints, so item
                   position i holds the image whose primary key is ids[i]
  vNNNNNN.vec.npy  (N, D) float32 unit vectors, row i = position i: candidates
                   are re-ranked by exact cosine distance from this memory-mapped
                   copy, so a query needs no database round trip for vectors
  vNNNNNN.pca.npy  (1 + INDEX_DIM, D) float32: row 0 the mean of the fitted
                   sample, then the principal components, largest first (zero
                   rows past the sample's rank); a query is projected with it
  vNNNNNN.white.npy (1 + WHITEN_DIM, D) float32: the whitening the similarity
                   bands measure near-duplicates in (projection.fit_whitening)
  vNNNNNN.hash.npy (N,) int64: each item's perceptual hash
                   (imaging.perceptual_hashes; NO_HASH when unknown)
  vNNNNNN.verified local only: this host checked the files against the checksum
Files are built under temporary names and published with an atomic rename into
IMAGESEARCH_INDEX_DIR, which is also a cache: the published copy lives in the
storage backend (local disk or S3), so a web process on another host fetches it
on first use. A version's files never change once published. A version built
before the projection existed has no .pca.npy and is treated as missing: search
is exact until the rebuild that this triggers.

Annoy mmaps a local file; that is why index files, alone among the product's
files, are read from a local directory rather than through the storage API.
Annoy can crash the process on a damaged file, so nothing is handed to it before
the sizes and the checksum of all its files have been verified.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

from gallery import embedding
from gallery.search import ann, projection

if TYPE_CHECKING:
    from gallery.models import IndexBuild

logger = logging.getLogger(__name__)

SUFFIXES = (".ann", ".ids.npy", ".vec.npy", ".pca.npy", ".white.npy", ".hash.npy")
LAST_ANN = (1, 2, 3, 4, 5, 0)  # the order files are published in: the forest last
NPY_HEADER_MAX = 4096  # np.save headers are 128 bytes; anything bigger is garbage


class IndexUnavailable(Exception):
    """The index file is missing, incomplete or corrupt: search exactly instead."""


class Missing(IndexUnavailable):
    """Files absent here and in storage (or storage unreachable): may appear later."""


@dataclass(frozen=True)
class BuiltIndex:
    version: int
    item_count: int
    n_trees: int
    checksum: str
    size_bytes: int


@dataclass(frozen=True)
class Ref:
    """What the database knows about one published version (an IndexBuild row)."""

    gallery_id: int
    version: int
    checksum: str
    n_trees: int
    item_count: int
    # How queries use it, chosen at build time (gallery.search.calibration).
    exact: bool = False  # scan the stored vectors, not the forest
    search_k: int = 0  # 0: ann.search_k_for()'s fixed rule
    pool: int = 0
    dim: int = 0  # width of its vectors (its embedding version's); 0: the active backbone's


def ref_for(build: IndexBuild) -> Ref:
    """Return the Ref of an IndexBuild row."""
    return Ref(
        build.gallery_id,
        build.version,
        build.checksum,
        build.n_trees,
        build.item_count,
        exact=build.exact,
        search_k=build.search_k,
        pool=build.pool,
        # During a switch the served build is of another backbone, maybe of another width.
        dim=embedding.dim_of(build.embedding_version) if build.embedding_version else 0,
    )


class Loaded:
    """One verified version, opened for search."""

    def __init__(
        self,
        forest: ann.Forest,
        ids: npt.NDArray[np.int64],
        vectors: npt.NDArray[np.float32],
        pca: npt.NDArray[np.float32],
        white: npt.NDArray[np.float32],
        hashes: npt.NDArray[np.int64],
    ) -> None:
        self.forest = forest  # Annoy forest over (N, INDEX_DIM) projected vectors
        self.ids = ids  # (N,) int64, sorted: position -> image pk
        self.vectors = vectors  # (N, D) float32, memory-mapped: position -> unit vector
        self.pca = pca  # (1 + INDEX_DIM, D) float32, in RAM: mean, then components
        self.white = white  # (1 + WHITEN_DIM, D) float32, in RAM: mean, then scaled components
        self.hashes = hashes  # (N,) int64, in RAM: position -> perceptual hash


def local_dir(gallery_id: int) -> Path:
    return Path(settings.IMAGESEARCH_INDEX_DIR) / str(gallery_id)


def local_paths(gallery_id: int, version: int) -> tuple[Path, ...]:
    """The local files of a version, in SUFFIXES order."""
    base = local_dir(gallery_id) / f"v{version:06d}"
    return tuple(Path(f"{base}{s}") for s in SUFFIXES)


def _remote_names(gallery_id: int, version: int) -> tuple[str, ...]:
    return tuple(f"indexes/{gallery_id}/v{version:06d}{s}" for s in SUFFIXES)


def checksum(paths: Iterable[str | Path]) -> str:
    """sha256 over the files' bytes in SUFFIXES order."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def build(
    gallery_id: int,
    version: int,
    ids: npt.ArrayLike,
    vectors: npt.ArrayLike,
    seed: int = 0,
    hashes: npt.ArrayLike | None = None,
) -> BuiltIndex:
    """Build and publish the index of one gallery version.

    `ids` is an (N,) int64 array of image pks; `vectors` is (N, D) float32 of
    unit length; `hashes` (N,) int64 their perceptual hashes (None: unknown). The same inputs and seed give the same answers (the projection
    file too; the forest's node order depends on build-thread timing).
    Safe to run twice: a rebuild of the same version replaces the files atomically.
    """
    ids = np.asarray(ids, dtype=np.int64)  # (N,)
    vectors = np.asarray(vectors, dtype=np.float32)  # (N, D)
    assert vectors.ndim == 2 and len(vectors) == len(ids), vectors.shape
    hashes = np.zeros(len(ids), dtype=np.int64) if hashes is None else np.asarray(hashes, dtype=np.int64)
    assert hashes.shape == (len(ids),), hashes.shape
    if len(ids) > 1 and not np.all(ids[1:] > ids[:-1]):
        order = np.argsort(ids, kind="stable")  # searchsorted needs sorted, unique pks
        ids, vectors, hashes = ids[order], vectors[order], hashes[order]
        assert np.all(ids[1:] > ids[:-1]), "duplicate image pks"
    directory = local_dir(gallery_id)
    directory.mkdir(parents=True, exist_ok=True)
    finals = local_paths(gallery_id, version)
    n_trees = ann.n_trees_for(len(ids))

    temps: list[str] = []
    for suffix in SUFFIXES:
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=f"{suffix}.tmp")
        os.close(fd)
        temps.append(tmp)
    tmp_ann, tmp_ids, tmp_vec, tmp_pca, tmp_white, tmp_hash = temps  # in SUFFIXES order, like finals
    try:
        pca = projection.fit_projection(vectors, seed)  # (1 + d, D)
        white = projection.fit_whitening(vectors, seed)  # (1 + w, D)
        ann.build_forest(tmp_ann, vectors, lambda chunk: projection.project(pca, chunk), n_trees, seed)
        for tmp, array in ((tmp_ids, ids), (tmp_vec, vectors), (tmp_pca, pca), (tmp_white, white), (tmp_hash, hashes)):
            with open(tmp, "wb") as fh:
                np.save(fh, array)
        digest = checksum(temps)
        size = sum(os.path.getsize(t) for t in temps)
        # .ann last: a reader that sees the .ann finds its map, vectors and projections.
        for i in LAST_ANN:
            os.replace(temps[i], finals[i])
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
    _mark_verified(finals, digest)  # hashed just above, from these very bytes
    remotes = _remote_names(gallery_id, version)
    for i in LAST_ANN:  # .ann last in storage too, for the same reason
        _publish(finals[i], remotes[i])
    return BuiltIndex(version=version, item_count=len(ids), n_trees=n_trees, checksum=digest, size_bytes=size)


def read_whitening(gallery_id: int, version: int) -> npt.NDArray[np.float32]:
    """Return the (1 + WHITEN_DIM, D) whitening of a version this host has just built (for fitting its bands)."""
    return np.load(local_paths(gallery_id, version)[4], allow_pickle=False)


def _storage_is_local_cache() -> bool:
    # With a filesystem storage on this host the index directory already is the
    # published copy; uploading it again into MEDIA_ROOT would only double the disk.
    return not settings.S3_BUCKET


def storage_is_local_cache() -> bool:
    """True when the index directory is itself the published copy (no S3): nothing to upload or fetch."""
    return _storage_is_local_cache()


def _publish(local_path: Path, remote_name: str) -> None:
    if _storage_is_local_cache():
        return
    if default_storage.exists(remote_name):
        default_storage.delete(remote_name)
    with open(local_path, "rb") as fh:
        default_storage.save(remote_name, File(fh))


def _fetch(local_path: Path, remote_name: str) -> None:
    if local_path.exists():
        return
    if _storage_is_local_cache() or not default_storage.exists(remote_name):
        raise Missing(f"{local_path.name} is missing")
    local_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=local_path.parent, suffix=".fetch.tmp")
    try:
        with os.fdopen(fd, "wb") as out, default_storage.open(remote_name, "rb") as src:
            for chunk in iter(lambda: src.read(1 << 22), b""):
                out.write(chunk)
        os.replace(tmp, local_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def verified_files(ref: Ref) -> tuple[Path, ...]:
    """Fetch (if need be) and verify a version's files against its checksum; return their local paths.

    In SUFFIXES order, for copying them elsewhere (an export): nothing is
    opened with Annoy. Raise Missing or IndexUnavailable as open_version does.
    """
    paths = _fetch_version(ref)
    try:
        _check_checksum(ref, paths)
    except OSError as exc:  # a file removed meanwhile (a newer build cleaning up)
        raise Missing(f"v{ref.version} cannot be read: {exc}") from exc
    return paths


def _fetch_version(ref: Ref) -> tuple[Path, ...]:
    """Fetch the version's files from storage where this host lacks them; return their local paths."""
    paths = local_paths(ref.gallery_id, ref.version)
    remotes = _remote_names(ref.gallery_id, ref.version)
    try:
        # A version built before the projection or the bands lacks a file:
        # missing, like any absent file, so search is exact and a rebuild is queued.
        for i in LAST_ANN:
            _fetch(paths[i], remotes[i])
    except IndexUnavailable:
        raise
    except Exception as exc:  # storage down or refusing: try again later, search exactly meanwhile
        raise Missing(f"v{ref.version} cannot be fetched: {type(exc).__name__}: {exc}") from exc
    return paths


def _check_checksum(ref: Ref, paths: tuple[Path, ...]) -> None:
    """Raise IndexUnavailable unless the files hash to the build's checksum (once per file set: a marker remembers)."""
    if not ref.checksum:
        raise IndexUnavailable(f"v{ref.version} has no checksum")
    if not _verified(paths, ref.checksum):
        if checksum(paths) != ref.checksum:
            raise IndexUnavailable(f"v{ref.version} does not match its checksum")
        _mark_verified(paths, ref.checksum)


def _npy_shape(path: Path, dtype: str) -> tuple[int, ...]:
    """Check an .npy file's header and size without trusting it; return its shape."""
    with open(path, "rb") as fh:
        major, _minor = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, file_dtype = read_header(fh, max_header_size=NPY_HEADER_MAX)
        offset = fh.tell()
    if file_dtype != np.dtype(dtype) or fortran:
        raise ValueError(f"unexpected array {shape} {file_dtype}")
    expected = offset + int(np.prod(shape)) * np.dtype(dtype).itemsize
    if os.path.getsize(path) != expected:
        raise ValueError(f"size {os.path.getsize(path)} != {expected}")
    return tuple(shape)


def open_version(ref: Ref, dim: int) -> Loaded:
    """Fetch (if need be), verify and open one version whose vectors are `dim` wide. Raise IndexUnavailable."""
    paths = _fetch_version(ref)
    ann_path, ids_path, vec_path, pca_path, white_path, hash_path = paths
    try:
        if _npy_shape(ids_path, "<i8") != (ref.item_count,) or _npy_shape(vec_path, "<f4") != (ref.item_count, dim):
            raise IndexUnavailable(f"v{ref.version}: item count or width differs from its build record")
        if _npy_shape(pca_path, "<f4") != (1 + projection.INDEX_DIM, dim):
            raise IndexUnavailable(f"{pca_path.name} is not a projection to {projection.INDEX_DIM} dimensions")
        if _npy_shape(white_path, "<f4") != (1 + projection.WHITEN_DIM, dim):
            raise IndexUnavailable(f"{white_path.name} is not a whitening to {projection.WHITEN_DIM} dimensions")
        if _npy_shape(hash_path, "<i8") != (ref.item_count,):
            raise IndexUnavailable(f"{hash_path.name} does not hold one hash per item")
        # Size first (cheap), then every byte: Annoy trusts its file blindly.
        if os.path.getsize(ann_path) < ref.item_count * projection.INDEX_DIM * 4:
            raise IndexUnavailable(f"{ann_path.name} is truncated")
        _check_checksum(ref, paths)
        ids = np.load(ids_path, allow_pickle=False)  # (N,) int64, small: read into RAM
        vectors = np.load(vec_path, mmap_mode="r", allow_pickle=False)  # (N, D) float32, shared page cache
        pca = np.load(pca_path, allow_pickle=False)  # (1 + d, D) float32, 264 KB at D = 512
        white = np.load(white_path, allow_pickle=False)  # (1 + w, D) float32, 526 KB at D = 512
        hashes = np.load(hash_path, allow_pickle=False)  # (N,) int64, 8 MB at a million items
        forest = ann.load_forest(str(ann_path))
    except IndexUnavailable:
        raise
    except (OSError, ValueError) as exc:
        raise IndexUnavailable(f"v{ref.version} cannot be loaded: {exc}") from exc
    if ann.item_count(forest) != ref.item_count:
        raise IndexUnavailable(f"{ann_path.name} holds {ann.item_count(forest)} items, not {ref.item_count}")
    return Loaded(forest, ids, vectors, pca, white, hashes)


# Hashing a version costs about a second per 500 MB (4 GB at a million images);
# every web process would pay it on its first query after each rebuild. So the
# first process on a host to verify a version (or the builder, which hashed
# the files it wrote) leaves a marker naming the checksum and each file's
# size, mtime and inode; others trust files that still match it. Rewriting or
# truncating a file changes those, and the next load hashes again.


def _marker_path(paths: Sequence[Path]) -> Path:
    return paths[0].with_suffix(".verified")


def _stat_key(paths: Iterable[Path]) -> list[list[int]]:
    return [[st.st_size, st.st_mtime_ns, st.st_ino] for st in (os.stat(p) for p in paths)]


def _verified(paths: Sequence[Path], digest: str) -> bool:
    try:
        marker = json.loads(_marker_path(paths).read_text())
        return marker == {"checksum": digest, "files": _stat_key(paths)}
    except (OSError, ValueError):
        return False


def _mark_verified(paths: Sequence[Path], digest: str) -> None:
    marker = _marker_path(paths)
    fd, tmp = tempfile.mkstemp(dir=marker.parent, suffix=".verified.tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump({"checksum": digest, "files": _stat_key(paths)}, fh)
        os.replace(tmp, marker)
    except OSError:  # a read-only cache still works, it just hashes every time
        logger.warning("cannot write %s", marker, exc_info=True)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_versions(gallery_id: int, keep: Collection[int]) -> None:
    """Delete the files of every version of the gallery except those in `keep`."""
    directory = local_dir(gallery_id)
    if directory.exists():
        for path in directory.iterdir():
            if not path.name.startswith("v"):
                # Stale temporaries of a crashed build: older than an hour only.
                if path.name.endswith(".tmp") and time.time() - path.stat().st_mtime > 3600:
                    path.unlink(missing_ok=True)
                continue
            try:
                version = int(path.name[1:7])
            except ValueError:
                continue
            if version not in keep:
                path.unlink(missing_ok=True)
    if not _storage_is_local_cache():
        try:
            _dirs, files = default_storage.listdir(f"indexes/{gallery_id}")
        except (FileNotFoundError, OSError):
            files = []
        for name in files:
            try:
                version = int(name[1:7])
            except ValueError:
                continue
            if version not in keep:
                default_storage.delete(f"indexes/{gallery_id}/{name}")


def remove_gallery_files(gallery_id: int) -> None:
    """Delete every index file of a gallery, here and in storage (the caller evicts it from caches)."""
    remove_versions(gallery_id, keep=set())
    directory = local_dir(gallery_id)
    if directory.exists():
        for path in directory.iterdir():
            path.unlink(missing_ok=True)
        directory.rmdir()
