"""The one module that imports Annoy and knows where index files live.

One index per gallery and build version, four files:
  vNNNNNN.ann      the Annoy forest (euclidean metric) over the vectors projected
                   to INDEX_DIM dimensions by the version's PCA
  vNNNNNN.ids.npy  (N,) int64, sorted: Annoy ids must be dense ints, so item
                   position i holds the image whose primary key is ids[i]
  vNNNNNN.vec.npy  (N, 512) float32 unit vectors, row i = position i: candidates
                   are re-ranked by exact cosine distance from this memory-mapped
                   copy, so a query needs no database round trip for vectors
  vNNNNNN.pca.npy  (1 + INDEX_DIM, 512) float32: row 0 the mean of the fitted
                   sample, then the principal components, largest first (zero
                   rows past the sample's rank); a query is projected with it
  vNNNNNN.verified local only: this host checked the files against the checksum
Files are built under temporary names and published with an atomic rename into
IMAGESEARCH_INDEX_DIR, which is also a cache: the published copy lives in the
storage backend (local disk or S3), so a web process on another host fetches it
on first use. A version's files never change once published. A version built
before the projection existed has no .pca.npy and is treated as missing: search
is exact until the rebuild that this triggers.

Search is "compressed ANN + exact re-rank": Annoy finds a pool of candidates in
the projected space (a quarter of the dimensions: a quarter of the work per
distance, and trees that split better), and the pool is ranked by exact cosine
distance on the stored 512-d vectors, so the distances returned are exact and
only membership of the pool is approximate.

Annoy mmaps a local file; that is why index files, alone among the product's
files, are read from a local directory rather than through the storage API.
Annoy can crash the process on a damaged file, so nothing is handed to it before
the sizes and the checksum of all four files have been verified.
"""

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from annoy import AnnoyIndex
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

logger = logging.getLogger(__name__)

DIM = 512
# The forest is built over vectors projected to INDEX_DIM by PCA. On
# bench/search.py's clustered data, the exact nearest 128 in 128 dimensions hold
# every true top-10 at 10k, 100k and 1M items; in 64 dimensions they hold only
# 0.89 of it at 1M (10,000 clusters no longer separate). Real VGG16 features
# have a steeper spectrum than that data, so 128 keeps a margin for them too.
INDEX_DIM = 128
METRIC = "euclidean"  # in the projected space: unit vectors, so the same order as cosine
# Candidates ranked exactly per query: at least POOL, and twice the results
# asked for. 128 covers a cluster of ~100 near-duplicates, whose order the
# projection blurs (a pool of 100 reaches 0.996 recall@10 at best, 128 reaches 1.0).
POOL = 128
PCA_SAMPLE = 20_000  # rows the projection is fitted on: the spectrum settles well before
# Past this many items the forest is built straight into its file (Annoy's
# on_disk_build) instead of in RAM, so a rebuild's memory stays bounded.
ON_DISK_BUILD_ITEMS = 200_000
CACHE_SIZE = 16
# A version whose files are missing is tried again after this long (it may be
# still uploading, or storage may be down); a corrupt version never is: it is
# immutable, and the rebuild it triggers gets a new version number.
MISSING_RETRY_SECONDS = 30.0
NPY_HEADER_MAX = 4096  # np.save headers are 128 bytes; anything bigger is garbage


class IndexUnavailable(Exception):
    """The index file is missing, incomplete or corrupt: search exactly instead."""


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


def n_trees_for(count):
    """Return the number of trees for `count` items: more trees, better recall, slower build.

    Measured on bench/search.py's clustered data projected to 128 dimensions,
    pool 128: at 100k items 64 trees reach recall@10 0.997 with search_k 1,500
    where 32 trees need 3,000; at 1M, with search_k 32,000, 64 trees reach 0.92
    where 32 reach 0.87, and 96 trees gain nothing over 64 (0.991 against 0.992
    at 96,000). 64 trees build in about 5 s at 100k and 70 s at 1M (on-disk,
    two cores, projection and files included). Below 50k items 32 trees find
    every true neighbour (recall 1.0 at 30k with search_k 500).
    """
    if count < 50_000:
        return 32
    return 64


def pool_for(n, count):
    """Return how many candidates Annoy is asked for when a query wants `n` results."""
    return min(count, max(POOL, 2 * n))


def search_k_for(n_trees, n, count):
    """Return Annoy's search_k (roughly, how many item distances one query computes) for `n` results.

    With the trees of n_trees_for() and a pool of 128, the search_k for
    recall@10 >= 0.99 on bench/search.py's clustered data grows steeply with
    the gallery: about 1,500 at 100k items, 12,000 at 300k and 126,000 at 1M
    (1M: 0.986 at 101,000, 0.991 at 126,000, 0.994 at 151,000; 1,000 queries).
    The share to inspect grows because ever more clusters lie about as near a
    query as its own (512-d Annoy needed a seventh of 1M for 0.985). Hence
    1,600 * (count / 100k) ** 1.9: 1,600 at 100k (recall 0.998, 0.5 ms),
    12,900 at 300k, 127,000 at 1M (about 24 ms); never less than eight
    candidates per pool slot (1,024 for a pool of 128), which is ample below
    100k (recall 1.0 at 10k). `n_trees` is part of the calibration: a
    different forest needs measuring again.
    """
    pool = pool_for(n, count)
    return max(8 * pool, int(1_600 * (count / 100_000) ** 1.9))


def _local_dir(gallery_id):
    return Path(settings.IMAGESEARCH_INDEX_DIR) / str(gallery_id)


SUFFIXES = (".ann", ".ids.npy", ".vec.npy", ".pca.npy")


def _local_paths(gallery_id, version):
    base = _local_dir(gallery_id) / f"v{version:06d}"
    return tuple(Path(f"{base}{s}") for s in SUFFIXES)


def _remote_names(gallery_id, version):
    return tuple(f"indexes/{gallery_id}/v{version:06d}{s}" for s in SUFFIXES)


def _checksum(paths):
    """sha256 over the files' bytes in order (.ann, .ids.npy, .vec.npy, .pca.npy)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def fit_projection(vectors, seed=0):
    """Return the (1 + INDEX_DIM, 512) float32 projection of `vectors` ((N, 512) float32).

    Row 0 is the mean of a seeded sample of at most PCA_SAMPLE rows, then the
    top INDEX_DIM principal components of that sample, largest first. Components
    past the sample's rank (N <= INDEX_DIM) are zero rows, as are those of
    (numerically) zero variance: their directions would be whatever LAPACK
    happens to return, and they carry no information about the gallery.
    """
    n = len(vectors)
    pca = np.zeros((1 + INDEX_DIM, DIM), dtype=np.float32)  # (1 + d, 512)
    if n == 0:
        return pca
    if n > PCA_SAMPLE:
        rows = np.sort(np.random.default_rng(seed).choice(n, PCA_SAMPLE, replace=False))  # (S,)
        sample = np.asarray(vectors[rows], dtype=np.float64)  # (S, 512)
    else:
        sample = np.asarray(vectors, dtype=np.float64)  # (N, 512)
    mean = sample.mean(axis=0)  # (512,)
    centred = sample - mean  # a copy: `vectors` may already be float64, and is the caller's
    cov = centred.T @ centred / len(sample)  # (512, 512)
    eigvals, eigvecs = np.linalg.eigh(cov)  # ascending; eigvecs[:, i] is a component
    eigvals, eigvecs = eigvals[::-1][:INDEX_DIM], eigvecs[:, ::-1][:, :INDEX_DIM]  # (d,), (512, d) largest first
    rank = int(np.count_nonzero(eigvals > eigvals[0] * 1e-7)) if eigvals[0] > 0 else 0
    components = np.ascontiguousarray(eigvecs[:, :rank].T)  # (r, 512), r <= d
    # An eigenvector's sign is arbitrary: fix it (largest entry positive) so a
    # different LAPACK build cannot flip a component.
    flip = components[np.arange(len(components)), np.abs(components).argmax(axis=1)] < 0
    components[flip] *= -1
    pca[0] = mean
    pca[1 : 1 + len(components)] = components
    return pca


def _project(pca, vectors):
    """Return vectors ((B, 512) or (512,)) projected with `pca`: (B, INDEX_DIM) or (INDEX_DIM,)."""
    return (vectors - pca[0]) @ pca[1:].T


def build(gallery_id, version, ids, vectors, seed=0):
    """Build and publish the index of one gallery version.

    `ids` is an (N,) int64 array of image pks; `vectors` is (N, 512) float32 of
    unit length. The same inputs and seed give the same answers (the projection
    file too; the forest's node order depends on build-thread timing).
    Safe to run twice: a rebuild of the same version replaces the files atomically.
    """
    ids = np.asarray(ids, dtype=np.int64)  # (N,)
    vectors = np.asarray(vectors, dtype=np.float32)  # (N, 512)
    assert vectors.shape == (len(ids), DIM), vectors.shape
    if len(ids) > 1 and not np.all(ids[1:] > ids[:-1]):
        order = np.argsort(ids, kind="stable")  # searchsorted needs sorted, unique pks
        ids, vectors = ids[order], vectors[order]
        assert np.all(ids[1:] > ids[:-1]), "duplicate image pks"
    local_dir = _local_dir(gallery_id)
    local_dir.mkdir(parents=True, exist_ok=True)
    finals = _local_paths(gallery_id, version)
    n_trees = n_trees_for(len(ids))
    on_disk = len(ids) > ON_DISK_BUILD_ITEMS

    temps = []
    for suffix in SUFFIXES:
        fd, tmp = tempfile.mkstemp(dir=local_dir, suffix=f"{suffix}.tmp")
        os.close(fd)
        temps.append(tmp)
    tmp_ann, tmp_ids, tmp_vec, tmp_pca = temps  # in SUFFIXES order, like finals
    try:
        pca = fit_projection(vectors, seed)  # (1 + d, 512)
        index = AnnoyIndex(INDEX_DIM, METRIC)
        index.set_seed(seed)
        if on_disk:
            index.on_disk_build(tmp_ann)
        for start in range(0, len(vectors), 8192):
            projected = _project(pca, vectors[start : start + 8192])  # (B, d)
            # Lists, chunk by chunk: Annoy copies them faster than numpy rows, and
            # a chunk bounds the Python floats alive at once.
            for pos, vec in enumerate(projected.tolist(), start):
                index.add_item(pos, vec)
        # Each build thread seeds its own generator from the seed, so the trees
        # (and every query's answer) are reproducible; only the node numbering in
        # the file, hence the checksum, depends on thread timing.
        index.build(n_trees, n_jobs=-1)
        if not on_disk:
            index.save(tmp_ann)
        index.unload()
        for tmp, array in ((tmp_ids, ids), (tmp_vec, vectors), (tmp_pca, pca)):
            with open(tmp, "wb") as fh:
                np.save(fh, array)
        checksum = _checksum(temps)
        size = sum(os.path.getsize(t) for t in temps)
        # .ann last: a reader that sees the .ann finds its map, vectors and projection.
        for i in (1, 2, 3, 0):
            os.replace(temps[i], finals[i])
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
    _mark_verified(finals, checksum)  # hashed just above, from these very bytes
    remotes = _remote_names(gallery_id, version)
    for i in (1, 2, 3, 0):  # .ann last in storage too, for the same reason
        _publish(finals[i], remotes[i])
    return BuiltIndex(version=version, item_count=len(ids), n_trees=n_trees, checksum=checksum, size_bytes=size)


def _publish(local_path, remote_name):
    if _storage_is_local_cache():
        return
    if default_storage.exists(remote_name):
        default_storage.delete(remote_name)
    with open(local_path, "rb") as fh:
        default_storage.save(remote_name, File(fh))


def _storage_is_local_cache():
    # With a filesystem storage on this host the index directory already is the
    # published copy; uploading it again into MEDIA_ROOT would only double the disk.
    return not settings.S3_BUCKET


def _fetch(local_path, remote_name):
    if local_path.exists():
        return
    if _storage_is_local_cache() or not default_storage.exists(remote_name):
        raise _Missing(f"{local_path.name} is missing")
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


class _Missing(IndexUnavailable):
    pass


class _Loaded:
    def __init__(self, index, ids, vectors, pca):
        self.index = index  # forest over (N, INDEX_DIM) projected vectors
        self.ids = ids  # (N,) int64, sorted: position -> image pk
        self.vectors = vectors  # (N, 512) float32, memory-mapped: position -> unit vector
        self.pca = pca  # (1 + INDEX_DIM, 512) float32, in RAM: mean, then components


_cache = OrderedDict()  # (gallery_id, version) -> _Loaded
_cache_lock = threading.Lock()
_load_locks = {}  # (gallery_id, version) -> Lock: one thread verifies and loads a version
_broken = {}  # (gallery_id, version) -> (retry_at or None, reason)


def _npy_rows(path, dtype, row_shape):
    """Check an .npy file's header and size without trusting it; return its row count."""
    with open(path, "rb") as fh:
        major, _minor = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, file_dtype = read_header(fh, max_header_size=NPY_HEADER_MAX)
        offset = fh.tell()
    if file_dtype != np.dtype(dtype) or fortran or tuple(shape[1:]) != row_shape or len(shape) != 1 + len(row_shape):
        raise ValueError(f"unexpected array {shape} {file_dtype}")
    expected = offset + int(np.prod(shape)) * np.dtype(dtype).itemsize
    if os.path.getsize(path) != expected:
        raise ValueError(f"size {os.path.getsize(path)} != {expected}")
    return shape[0]


def _open(ref):
    ann_path, ids_path, vec_path, pca_path = paths = _local_paths(ref.gallery_id, ref.version)
    remote_ann, remote_ids, remote_vec, remote_pca = _remote_names(ref.gallery_id, ref.version)
    try:
        # A version built before the projection has no .pca.npy: missing, like any
        # absent file, so search is exact and a rebuild is queued.
        for local, remote in ((ids_path, remote_ids), (vec_path, remote_vec), (pca_path, remote_pca), (ann_path, remote_ann)):
            _fetch(local, remote)
    except IndexUnavailable:
        raise
    except Exception as exc:  # storage down or refusing: try again later, search exactly meanwhile
        raise _Missing(f"v{ref.version} cannot be fetched: {type(exc).__name__}: {exc}") from exc
    try:
        if _npy_rows(ids_path, "<i8", ()) != ref.item_count or _npy_rows(vec_path, "<f4", (DIM,)) != ref.item_count:
            raise IndexUnavailable(f"v{ref.version}: item count differs from its build record")
        if _npy_rows(pca_path, "<f4", (DIM,)) != 1 + INDEX_DIM:
            raise IndexUnavailable(f"{pca_path.name} is not a projection to {INDEX_DIM} dimensions")
        # Size first (cheap), then every byte: Annoy trusts its file blindly.
        if os.path.getsize(ann_path) < ref.item_count * INDEX_DIM * 4:
            raise IndexUnavailable(f"{ann_path.name} is truncated")
        if not ref.checksum:
            raise IndexUnavailable(f"v{ref.version} has no checksum")
        if not _verified(paths, ref.checksum):
            if _checksum(paths) != ref.checksum:
                raise IndexUnavailable(f"v{ref.version} does not match its checksum")
            _mark_verified(paths, ref.checksum)
        ids = np.load(ids_path, allow_pickle=False)  # (N,) int64, small: read into RAM
        vectors = np.load(vec_path, mmap_mode="r", allow_pickle=False)  # (N, 512) float32, shared page cache
        pca = np.load(pca_path, allow_pickle=False)  # (1 + d, 512) float32, 264 KB
        index = AnnoyIndex(INDEX_DIM, METRIC)
        index.load(str(ann_path))  # mmap: pages are shared between processes
    except IndexUnavailable:
        raise
    except (OSError, ValueError) as exc:
        raise IndexUnavailable(f"v{ref.version} cannot be loaded: {exc}") from exc
    if index.get_n_items() != ref.item_count:
        raise IndexUnavailable(f"{ann_path.name} holds {index.get_n_items()} items, not {ref.item_count}")
    return _Loaded(index, ids, vectors, pca)


# Hashing a version costs about a second per 500 MB (4 GB at a million images);
# every web process would pay it on its first query after each rebuild. So the
# first process on a host to verify a version (or the builder, which hashed
# the files it wrote) leaves a marker naming the checksum and each file's
# size, mtime and inode; others trust files that still match it. Rewriting or
# truncating a file changes those, and the next load hashes again.


def _marker_path(paths):
    return paths[0].with_suffix(".verified")


def _stat_key(paths):
    return [[st.st_size, st.st_mtime_ns, st.st_ino] for st in (os.stat(p) for p in paths)]


def _verified(paths, checksum):
    try:
        marker = json.loads(_marker_path(paths).read_text())
        return marker == {"checksum": checksum, "files": _stat_key(paths)}
    except (OSError, ValueError):
        return False


def _mark_verified(paths, checksum):
    marker = _marker_path(paths)
    fd, tmp = tempfile.mkstemp(dir=marker.parent, suffix=".verified.tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump({"checksum": checksum, "files": _stat_key(paths)}, fh)
        os.replace(tmp, marker)
    except OSError:  # a read-only cache still works, it just hashes every time
        logger.warning("cannot write %s", marker, exc_info=True)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load(ref):
    key = (ref.gallery_id, ref.version)
    with _cache_lock:
        loaded = _cache.get(key)
        if loaded is not None:
            _cache.move_to_end(key)
            return loaded
        broken = _broken.get(key)
        if broken is not None:
            retry_at, reason = broken
            if retry_at is None or time.monotonic() < retry_at:
                raise IndexUnavailable(reason)
            del _broken[key]
        load_lock = _load_locks.setdefault(key, threading.Lock())
    with load_lock:  # concurrent first queries wait for one verification, not N
        with _cache_lock:
            loaded = _cache.get(key)
        if loaded is not None:
            return loaded
        try:
            loaded = _open(ref)
        except _Missing as exc:
            with _cache_lock:
                _broken[key] = (time.monotonic() + MISSING_RETRY_SECONDS, str(exc))
            raise
        except IndexUnavailable as exc:
            logger.error("gallery %s index v%s is unusable: %s", ref.gallery_id, ref.version, exc)
            with _cache_lock:
                _broken[key] = (None, str(exc))
            raise
        with _cache_lock:
            _cache[key] = loaded
            _load_locks.pop(key, None)
            # Keep one version per gallery and at most CACHE_SIZE galleries. Evicted
            # indexes are dropped, never unload()ed: a thread may still be querying
            # one, and Annoy unmaps when the last reference goes.
            for other in [k for k in _cache if k[0] == ref.gallery_id and k != key]:
                del _cache[other]
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    return loaded


def search(ref, vector, n, search_k=None):
    """Return the approximate `n` nearest items of an index version to `vector`.

    Returns (pks, distances): (M,) int64 and (M,) float32 cosine distances
    (1 - cos) computed exactly from the stored vectors, M <= n, nearest first,
    ties by pk. `search_k` overrides search_k_for() (for benchmarks). Raises
    IndexUnavailable when the index cannot be used.
    """
    loaded = _load(ref)
    query = np.asarray(vector, dtype=np.float32).reshape(DIM)  # (512,)
    n = min(n, ref.item_count)
    projected = _project(loaded.pca, query)  # (d,)
    positions = loaded.index.get_nns_by_vector(
        projected.tolist(), pool_for(n, ref.item_count), search_k=search_k or search_k_for(ref.n_trees, n, ref.item_count)
    )
    positions = np.asarray(positions, dtype=np.int64)  # (P,) the pool, in projected order
    distances = 1.0 - loaded.vectors[positions] @ query  # (P,) exact re-rank on the 512-d vectors
    pks = loaded.ids[positions]  # (P,)
    order = np.lexsort((pks, distances))[:n]  # (M,)
    return pks[order], distances[order]


def contains(ref, pks):
    """Return a boolean mask: which of `pks` ((P,) int64) are items of this index version."""
    loaded = _load(ref)
    pks = np.asarray(pks, dtype=np.int64)  # (P,)
    if not len(loaded.ids) or not len(pks):
        return np.zeros(len(pks), dtype=bool)
    at = np.minimum(np.searchsorted(loaded.ids, pks), len(loaded.ids) - 1)
    return loaded.ids[at] == pks


def stored_vector(ref, pk):
    """Return the (512,) float32 vector this version holds for image `pk`, or None if it holds none."""
    loaded = _load(ref)
    at = int(np.searchsorted(loaded.ids, pk))
    if at < len(loaded.ids) and loaded.ids[at] == pk:
        return np.array(loaded.vectors[at])
    return None


def evict(gallery_id=None):
    """Forget loaded and broken indexes in this process (all, or one gallery's)."""
    with _cache_lock:
        for table in (_cache, _broken):
            for key in [k for k in table if gallery_id is None or k[0] == gallery_id]:
                del table[key]


def is_broken(gallery_id, version):
    """Return the reason this process gave up on a version, or None."""
    with _cache_lock:
        broken = _broken.get((gallery_id, version))
    return broken[1] if broken else None


def remove_versions(gallery_id, keep):
    """Delete the files of every version of the gallery except those in `keep`."""
    local_dir = _local_dir(gallery_id)
    if local_dir.exists():
        for path in local_dir.iterdir():
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


def remove_gallery(gallery_id):
    """Delete every index file of a gallery (it was deleted)."""
    evict(gallery_id)
    remove_versions(gallery_id, keep=set())
    local_dir = _local_dir(gallery_id)
    if local_dir.exists():
        for path in local_dir.iterdir():
            path.unlink(missing_ok=True)
        local_dir.rmdir()
