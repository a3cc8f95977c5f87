"""The 2-D map of a gallery: laid out by the index worker after each build (gallery.analysis.layout)."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import IntegrityError, transaction

from gallery.analysis import layout
from gallery.models import Gallery, IndexBuild, MapBuild
from gallery.search import cache, store

logger = logging.getLogger(__name__)


def gallery_build_map(*, gallery_id: int, build_id: int) -> MapBuild | None:
    """Lay out one ready build's items in 2-D, write the coordinates file and record a MapBuild.

    Safe to run twice: a build already mapped (ready or failed) returns its
    row. A build that is no longer the gallery's current one is skipped
    (None): its successor queues its own map. A method that cannot run here
    or files that cannot be read give a FAILED row whose error says why; the
    next build tries again.
    """
    build = IndexBuild.objects.filter(pk=build_id, gallery_id=gallery_id, status=IndexBuild.Status.READY).first()
    gallery = Gallery.objects.filter(pk=gallery_id).only("current_index_id").first()
    if build is None or gallery is None or gallery.current_index_id != build.pk:
        return None
    done = MapBuild.objects.filter(build=build).first()
    if done is not None:
        return done
    method = settings.IMAGESEARCH_MAP_METHOD
    started = time.monotonic()
    fields: dict[str, object] = {"method": method, "item_count": build.item_count}
    try:
        loaded = cache.load(store.ref_for(build))
        xy = layout.layout(loaded.vectors, method, seed=settings.IMAGESEARCH_RANDOM_SEED, pca=loaded.pca)
        written = layout.write(gallery_id, build.version, loaded.ids, xy)
        fields.update(item_count=len(loaded.ids), file=written.name, size_bytes=written.size_bytes)
    except layout.LayoutUnavailable as exc:
        fields.update(status=MapBuild.Status.FAILED, error=str(exc))
    except store.IndexUnavailable as exc:
        fields.update(status=MapBuild.Status.FAILED, error=f"The index files could not be read: {exc}")
    except (OSError, ValueError, MemoryError) as exc:
        fields.update(status=MapBuild.Status.FAILED, error=f"The layout failed: {type(exc).__name__}: {exc}")
    finally:
        cache.evict(gallery_id)  # a worker keeps no versions open between builds
    fields["duration_seconds"] = time.monotonic() - started
    try:
        with transaction.atomic():
            record = MapBuild.objects.create(gallery_id=gallery_id, build=build, **fields)
    except IntegrityError:  # another delivery recorded it first (one row per build)
        return MapBuild.objects.get(build=build)
    if record.status == MapBuild.Status.FAILED:
        logger.warning("gallery %s v%s: no map: %s", gallery_id, build.version, record.error)
    else:
        logger.info(
            "gallery %s v%s: map of %d item(s) by %s in %.2f s",
            gallery_id,
            build.version,
            record.item_count,
            method,
            record.duration_seconds,
        )
    return record
