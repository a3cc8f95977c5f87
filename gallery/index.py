"""The one module that imports Annoy and knows where index files live.

One index per gallery and build version. Annoy ids must be dense ints, so item
position i holds the image whose primary key is ids[i] (kept in a .ids.npy file
beside the .ann file). Files are built into a temporary name and published with
an atomic rename into IMAGESEARCH_INDEX_DIR, which is also a cache: the
published copy lives in the storage backend (local disk or S3), so a web
process on another host fetches it on first use.

Annoy mmaps a local file; that is why index files, alone among the product's
files, are read from a local directory rather than through the storage API.
"""

import hashlib
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
METRIC = "angular"
# Past this many items the build streams to disk instead of holding the forest in RAM.
ON_DISK_BUILD_ITEMS = 200_000
CACHE_SIZE = 16


class IndexUnavailable(Exception):
    """The index file is missing, incomplete or corrupt: search exactly instead."""


@dataclass(frozen=True)
class BuiltIndex:
    version: int
    item_count: int
    n_trees: int
    checksum: str
    size_bytes: int


def n_trees_for(count):
    """Return the number of trees for `count` items: more trees, better recall, slower build."""
    if count < 10_000:
        return 20
    if count < 200_000:
        return 32
    return 48


def search_k_for(n_trees, n):
    """Return Annoy's search_k: how many nodes one query inspects."""
    return n * n_trees * 4


def _local_dir(gallery_id):
    return Path(settings.IMAGESEARCH_INDEX_DIR) / str(gallery_id)


def _names(gallery_id, version):
    base = f"v{version:06d}"
    local = _local_dir(gallery_id)
    remote = f"indexes/{gallery_id}/{base}"
    return local / f"{base}.ann", local / f"{base}.ids.npy", f"{remote}.ann", f"{remote}.ids.npy"


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def build(gallery_id, version, ids, vectors, seed=0):
    """Build and publish the index of one gallery version.

    `ids` is an (N,) int64 array of image pks; `vectors` is (N, 512) float32.
    Safe to run twice: a rebuild of the same version replaces the files atomically.
    """
    ids = np.asarray(ids, dtype=np.int64)  # (N,)
    vectors = np.asarray(vectors, dtype=np.float32)  # (N, 512)
    assert vectors.shape == (len(ids), DIM), vectors.shape
    local_dir = _local_dir(gallery_id)
    local_dir.mkdir(parents=True, exist_ok=True)
    ann_path, ids_path, remote_ann, remote_ids = _names(gallery_id, version)
    n_trees = n_trees_for(len(ids))

    fd, tmp_ann = tempfile.mkstemp(dir=local_dir, suffix=".ann.tmp")
    os.close(fd)
    fd, tmp_ids = tempfile.mkstemp(dir=local_dir, suffix=".npy.tmp")
    os.close(fd)
    try:
        index = AnnoyIndex(DIM, METRIC)
        index.set_seed(seed)
        if len(ids) > ON_DISK_BUILD_ITEMS:
            index.on_disk_build(tmp_ann)
        for pos, vec in enumerate(vectors):
            index.add_item(pos, vec)
        index.build(n_trees, n_jobs=-1)
        if len(ids) <= ON_DISK_BUILD_ITEMS:
            index.save(tmp_ann)
        index.unload()
        with open(tmp_ids, "wb") as fh:
            np.save(fh, ids)
        checksum = _sha256(tmp_ann)
        size = os.path.getsize(tmp_ann)
        # ids first: a reader that sees the .ann always finds its map.
        os.replace(tmp_ids, ids_path)
        os.replace(tmp_ann, ann_path)
    finally:
        for tmp in (tmp_ann, tmp_ids):
            if os.path.exists(tmp):
                os.unlink(tmp)
    _publish(ann_path, remote_ann)
    _publish(ids_path, remote_ids)
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
        raise IndexUnavailable(f"{local_path.name} is missing")
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


class _Loaded:
    def __init__(self, index, ids, n_trees):
        self.index = index
        self.ids = ids  # (N,) int64: position -> image pk
        self.n_trees = n_trees


_cache = OrderedDict()
_cache_lock = threading.Lock()


def _load(gallery_id, version, checksum, n_trees):
    key = (gallery_id, version)
    with _cache_lock:
        loaded = _cache.get(key)
        if loaded is not None:
            _cache.move_to_end(key)
            return loaded
    ann_path, ids_path, remote_ann, remote_ids = _names(gallery_id, version)
    try:
        _fetch(ids_path, remote_ids)
        _fetch(ann_path, remote_ann)
        if checksum and _sha256(ann_path) != checksum:
            raise IndexUnavailable(f"{ann_path.name} does not match its checksum")
        ids = np.load(ids_path, allow_pickle=False)
        index = AnnoyIndex(DIM, METRIC)
        index.load(str(ann_path))  # mmap: pages are shared between processes
        if index.get_n_items() != len(ids):
            index.unload()
            raise IndexUnavailable(f"{ann_path.name} holds {index.get_n_items()} items, its map {len(ids)}")
    except IndexUnavailable:
        raise
    except (OSError, ValueError) as exc:
        raise IndexUnavailable(f"{ann_path.name} cannot be loaded: {exc}") from exc
    loaded = _Loaded(index, ids, n_trees)
    with _cache_lock:
        _cache[key] = loaded
        # Keep one version per gallery and at most CACHE_SIZE galleries.
        for other in [k for k in _cache if k[0] == gallery_id and k != key]:
            _cache.pop(other).index.unload()
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)[1].index.unload()
    return loaded


def query(gallery_id, version, checksum, n_trees, vector, n):
    """Return up to `n` (image_pk, angular_distance) candidates nearest `vector`, nearest first.

    Raises IndexUnavailable when the index cannot be used.
    """
    loaded = _load(gallery_id, version, checksum, n_trees)
    positions, distances = loaded.index.get_nns_by_vector(
        np.asarray(vector, dtype=np.float32).tolist(), n, search_k=search_k_for(loaded.n_trees, n), include_distances=True
    )
    return [(int(loaded.ids[p]), float(d)) for p, d in zip(positions, distances)]


def evict(gallery_id=None):
    """Drop loaded indexes from this process's cache (all, or one gallery's)."""
    with _cache_lock:
        for key in [k for k in _cache if gallery_id is None or k[0] == gallery_id]:
            _cache.pop(key).index.unload()


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
