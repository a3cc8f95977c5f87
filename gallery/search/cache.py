"""Index versions this process has opened, and those it gave up on."""

import logging
import threading
import time
from collections import OrderedDict

from gallery import embedding
from gallery.search import store
from gallery.search.store import IndexUnavailable, Missing

logger = logging.getLogger(__name__)

CACHE_SIZE = 16
# A version whose files are missing is tried again after this long (it may be
# still uploading, or storage may be down); a corrupt version never is: it is
# immutable, and the rebuild it triggers gets a new version number.
MISSING_RETRY_SECONDS = 30.0

_cache: "OrderedDict[tuple[int, int], store.Loaded]" = OrderedDict()  # (gallery_id, version) -> Loaded
_lock = threading.Lock()
_load_locks: dict[tuple[int, int], threading.Lock] = {}  # one thread verifies and loads a version
_broken: dict[tuple[int, int], tuple[float | None, str]] = {}  # -> (retry_at or None, reason)


def load(ref: store.Ref) -> store.Loaded:
    """Return the opened version `ref` names, opening and verifying it on first use. Raise IndexUnavailable."""
    key = (ref.gallery_id, ref.version)
    with _lock:
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
        with _lock:
            loaded = _cache.get(key)
        if loaded is not None:
            return loaded
        try:
            loaded = store.open_version(ref, ref.dim or embedding.dim())
        except Missing as exc:
            with _lock:
                _broken[key] = (time.monotonic() + MISSING_RETRY_SECONDS, str(exc))
            raise
        except IndexUnavailable as exc:
            logger.error("gallery %s index v%s is unusable: %s", ref.gallery_id, ref.version, exc)
            with _lock:
                _broken[key] = (None, str(exc))
            raise
        with _lock:
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


def loaded_versions() -> list[tuple[int, int]]:
    """Return the (gallery_id, version) pairs open in this process, least recently used first."""
    with _lock:
        return list(_cache)


def evict(gallery_id: int | None = None) -> None:
    """Forget loaded and broken versions in this process (all, or one gallery's)."""
    with _lock:
        for table in (_cache, _broken):
            for key in [k for k in table if gallery_id is None or k[0] == gallery_id]:
                del table[key]


def is_broken(gallery_id: int, version: int) -> str | None:
    """Return the reason this process gave up on a version, or None."""
    with _lock:
        broken = _broken.get((gallery_id, version))
    return broken[1] if broken else None


def remove_gallery(gallery_id: int) -> None:
    """Forget a deleted gallery here and delete its index files."""
    evict(gallery_id)
    store.remove_gallery_files(gallery_id)
