"""Reads for pages: what a person may open, a gallery's status, the home listing."""

from datetime import timedelta
from typing import NamedTuple

import numpy as np
from django.conf import settings
from django.db.models import Count, Min, OuterRef, Subquery
from django.http import Http404
from django.utils import timezone

from gallery import access, vectors
from gallery.embedding import pipeline
from gallery.models import (
    DuplicateGroup,
    EmbeddingState,
    Export,
    Gallery,
    GroupingRun,
    Image,
    IndexBuild,
    ModerationState,
    Visibility,
)
from gallery.models.builds import MapBuild
from gallery.search import Match, reads


def gallery_for_view(*, user, slug):
    """Return the gallery or raise Http404 (also for a private gallery of someone else)."""
    gallery = access.visible_galleries(user).filter(slug=slug).select_related("owner").first()
    if gallery is None:
        raise Http404("No such gallery.")
    return gallery


def gallery_for_owner(*, user, slug):
    """Return the gallery if `user` owns it; 404 otherwise (strangers cannot probe slugs)."""
    gallery = Gallery.objects.filter(slug=slug, owner_id=user.pk).first() if user.is_authenticated else None
    if gallery is None:
        raise Http404("No such gallery.")
    return gallery


def image_for_view(*, user, pk):
    """Return the image with its gallery loaded, or raise Http404.

    Every "find similar" and thumbnail request starts here: one prepared query
    (gallery.search.reads), then the visibility rule for the row.
    """
    image = reads.image_with_gallery(pk)
    if image is None or not access.can_see(image, user):
        raise Http404("No such image.")
    return image


class MapState(NamedTuple):
    """What the map page can show: `record` is the MapBuild to draw (None: nothing yet), `state` one of
    ready, updating (an older map while the current build's is laid out), building, failed, no_index;
    `error` the current build's failure, if any."""

    record: MapBuild | None
    state: str
    error: str = ""


def gallery_map(*, gallery):
    """Return the MapState of `gallery`: its current build's map, or the newest ready one meanwhile."""
    build = gallery.current_build()
    if build is None:
        return MapState(None, "no_index")
    current = MapBuild.objects.filter(build_id=build.pk).first()
    if current is not None and current.status == MapBuild.Status.READY:
        return MapState(current, "ready")
    # The previous build's files are kept beside the current one's (services.indexing): its map still opens.
    older = (
        MapBuild.objects.filter(gallery=gallery, status=MapBuild.Status.READY)
        .exclude(build_id=build.pk)
        .select_related("build")
        .order_by("-build__version")
        .first()
    )
    if current is not None:
        return MapState(older, "failed", current.error)
    return MapState(older, "updating" if older else "building")


def map_visible_ids(*, user, gallery):
    """(V,) int64 sorted: the pks of `gallery`'s images `user` may see on its map (embedded, not rejected, visible)."""
    rows = Image.objects.searchable().visible_to(user).filter(gallery=gallery).order_by("pk")
    return np.fromiter(rows.values_list("pk", flat=True).iterator(chunk_size=20000), dtype=np.int64)


def map_names(*, user, gallery, ids):
    """{pk: name} of the images among `ids` that `user` may see on `gallery`'s map."""
    rows = Image.objects.searchable().visible_to(user).filter(gallery=gallery, pk__in=list(ids))
    return dict(rows.values_list("pk", "original_name"))


def visible_images_in_order(*, user, gallery, ids):
    """The images of `gallery` among `ids` that `user` may see, in the order of `ids` (others left out)."""
    found = {image.pk: image for image in gallery.images.visible_to(user).filter(pk__in=list(ids)).defer("embedding")}
    return [found[pk] for pk in ids if pk in found]


def _with_cover(galleries, user):
    """Annotate each gallery with its newest visible image (the cover) and how many `user` may see."""
    visible = Image.objects.visible_to(user).filter(gallery=OuterRef("pk"))
    return galleries.annotate(
        cover_id=Subquery(visible.order_by("-created_at", "-id").values("pk")[:1]),
        n_images=Subquery(visible.order_by().values("gallery").annotate(n=Count("pk")).values("n")[:1]),
    )


HOME_PUBLIC_LIMIT = 100


def home_galleries(*, user):
    """Return (the user's own galleries, other public galleries), each with a cover and an image count."""
    mine = Gallery.objects.filter(owner=user) if user.is_authenticated else Gallery.objects.none()
    public = Gallery.objects.filter(visibility=Visibility.PUBLIC)
    public = public.exclude(pk__in=mine.values("pk")).select_related("owner")
    return _with_cover(mine, user), _with_cover(public, user)[:HOME_PUBLIC_LIMIT]


RATE_WINDOW = 300  # seconds of writes the rate is measured over
LUMP_SECONDS = 0.5  # writes this close together are one batch


def embedding_rate(*, gallery, now):
    """Images per second the workers embed this gallery at now, measured between batch writes.

    Workers write a batch at once, so progress comes in lumps. Over the last
    RATE_WINDOW seconds, the rate is what was written after the first lump, over
    the time from the first lump to the last: neither a model load before the
    first batch nor the first lump's own size skews it (counting from the first
    claim, as a single lump must, made the time left 1.5-3x too long). When no
    lump came for twice the usual gap (a stall), the time since the first lump
    counts instead, so the estimate grows while nothing happens.
    """
    recent = gallery.images.filter(embedded_at__gte=now - timedelta(seconds=RATE_WINDOW))
    stamps = list(recent.order_by("embedded_at").values_list("embedded_at", flat=True)[:10_000])
    lumps: list[list] = []  # [first time, last time, count]
    for t in stamps:
        if lumps and (t - lumps[-1][1]).total_seconds() <= LUMP_SECONDS:
            lumps[-1][1] = t
            lumps[-1][2] += 1
        else:
            lumps.append([t, t, 1])
    if len(lumps) >= 2:
        first, last = lumps[0][1], lumps[-1][1]
        span = max((last - first).total_seconds(), LUMP_SECONDS)
        after_first = len(stamps) - lumps[0][2]
        gap = span / (len(lumps) - 1)
        if (now - last).total_seconds() > 2 * gap:
            span = (now - first).total_seconds()
        return after_first / span
    # One lump (or none) in the window: over the last minute, or since its first claim when the
    # work began less than a minute ago (a batch is written at its end).
    window = 60
    single = gallery.images.filter(embedded_at__gte=now - timedelta(seconds=window)).aggregate(
        n=Count("pk"), since=Min("claimed_at")
    )
    elapsed = window
    if single["since"] is not None:
        elapsed = min(window, max((now - single["since"]).total_seconds(), 1.0))
    return single["n"] / elapsed


def gallery_status(*, gallery, detailed=False):
    """Counts by embedding state, throughput (embedding_rate) and an ETA.

    The index part says in plain words whether search is ready (`label`); with
    `detailed` (staff) it adds the build's internals: version, search mode,
    search_k and pool, measured recall, and the one-line search summary.
    """
    counts = dict.fromkeys(EmbeddingState.values, 0)
    for row in gallery.images.values("embedding_state").annotate(n=Count("pk")):
        counts[row["embedding_state"]] = row["n"]
    rate = embedding_rate(gallery=gallery, now=timezone.now())
    remaining = counts[EmbeddingState.PENDING] + counts[EmbeddingState.PROCESSING]
    total = sum(counts.values())
    build = gallery.current_build()
    index = {
        "ready": build is not None,
        "items": build.item_count if build else 0,
        "built_at": build.built_at.isoformat() if build else None,
        "stale": gallery.index_dirty,
        "label": index_label(build, gallery.index_dirty),
    }
    status = {
        "counts": counts,
        "total": total,
        "done": counts[EmbeddingState.READY] + counts[EmbeddingState.FAILED],
        "remaining": remaining,
        "images_per_second": round(rate, 2),
        "eta_seconds": round(remaining / rate) if rate > 0 and remaining else None,
        "index": index,
        # While the site switches backbone: n of N re-embedded (search serves the previous model meanwhile).
        "switch": pipeline.switch_coverage(gallery=gallery).as_json(detailed=detailed),
    }
    if not detailed:
        return status
    search = index_search_mode(build)
    index.update(
        {
            "version": build.version if build else None,
            # How the build is searched and how well, as its calibration measured it.
            "mode": search["mode"],
            "search_k": build.search_k if build else 0,
            "pool": build.pool if build else 0,
            "recall": search["recall"],
            "recall_queries": build.recall_queries if build and search["recall"] is not None else 0,
            "search": search_summary(build),
        }
    )
    return status


def gallery_health(*, gallery, status=None, failures=10):
    """For staff: embedding coverage, the index's age and search quality, and the latest failures with reasons.

    Returns {"status" (gallery_status, detailed: given, or read here), "index_age_seconds", "stale_since",
    "failed_images" (the latest `failures` failed images), "failed_builds", "grouping", "map", "stuck",
    "switch" (the served and active embedding versions, and a switch's coverage)}.
    """
    if status is None:
        status = gallery_status(gallery=gallery, detailed=True)
    build = gallery.current_build()
    now = timezone.now()
    stuck_before = now - timedelta(seconds=settings.IMAGESEARCH_STUCK_AFTER_SECONDS)
    grouping = GroupingRun.objects.filter(build=build).first() if build else None
    map_build = MapBuild.objects.filter(build=build).first() if build else None
    return {
        "status": status,
        "built_at": build.built_at if build else None,
        "index_age_seconds": round((now - build.built_at).total_seconds()) if build else None,
        "stale_since": gallery.index_dirty_since if gallery.index_dirty else None,
        "stuck": gallery.images.filter(embedding_state=EmbeddingState.PROCESSING, claimed_at__lt=stuck_before).count(),
        "failed_images": list(
            gallery.images.filter(embedding_state=EmbeddingState.FAILED)
            .order_by("-created_at", "-pk")
            .only("pk", "original_name", "embedding_error", "created_at")[:failures]
        ),
        "failed_builds": list(
            IndexBuild.objects.filter(gallery=gallery, status=IndexBuild.Status.FAILED).order_by("-built_at")[:3]
        ),
        "grouping": grouping,
        "map": map_build,
        "switch": pipeline.switch_coverage(gallery=gallery),
    }


def index_label(build, stale):
    """The index chip's words for anyone: whether search is ready, with no build numbers."""
    if build is None:
        return "search not ready yet"
    items = f"{build.item_count} image{'' if build.item_count == 1 else 's'} searchable"
    return items + (" · update queued" if stale else "")


def index_search_mode(build):
    """Return {"mode", "recall"} of how search uses `build` (an IndexBuild or None).

    mode: "exact" (a scan of the version's vectors, or of the gallery's rows
    when there is no build of the current embedding), "forest" (Annoy with the
    calibrated setting), or "fixed" (a forest built before calibration, searched
    with the fixed rule). recall: recall@10 measured at build time, None when
    not measured (too few items, or a build before calibration); 1.0 for a scan.
    """
    # A gallery serves its build's version (embedding.served_version), the previous one during a switch.
    if build is None or not build.item_count:
        return {"mode": "exact", "recall": None}
    if build.exact:
        return {"mode": "exact", "recall": build.recall}
    return {"mode": "forest" if build.search_k else "fixed", "recall": build.recall}


def search_summary(build):
    """Return one line for people on how `build` is searched, or None without a build.

    E.g. "Search: exact (all 300 images)", "Index v3: recall@10 0.995 measured on 400 of its images".
    """
    if build is None:
        return None  # nothing indexed yet: the index chip says so
    if not build.item_count:
        return "Search: exact (the index is empty)"
    if build.exact:
        return f"Search: exact (all {build.item_count} image{'' if build.item_count == 1 else 's'})"
    if build.recall is None:
        return f"Index v{build.version}: recall not measured (built before calibration)"
    return f"Index v{build.version}: recall@10 {build.recall:.3f} measured on {build.recall_queries} of its images"


def rejected_neighbours(*, image, k=5):
    """Return the rejected images of the gallery nearest `image` (for moderators)."""
    vec = image.vector
    if vec is None:
        return []
    rows = list(
        Image.objects.filter(
            gallery=image.gallery,
            moderation_state=ModerationState.REJECTED,
            embedding_state=EmbeddingState.READY,
            embedding_version=image.embedding_version,
        )
        .exclude(pk=image.pk)
        .exclude(embedding__isnull=True)
        .values_list("pk", "embedding")
    )
    if not rows:
        return []
    pks = np.array([pk for pk, _ in rows], dtype=np.int64)  # (R,)
    dist = vectors.cosine_distances(vectors.matrix([e for _, e in rows if e is not None], len(vec)), vec)  # (R,)
    order = np.argsort(dist)[:k]
    objs = Image.objects.in_bulk([int(pks[i]) for i in order])
    return [Match(image=objs[int(pks[i])], distance=float(dist[i]), rank=r + 1) for r, i in enumerate(order)]


def open_groups(*, gallery):
    """The gallery's near-duplicate groups still holding two images or more (trashing or deleting one
    shrinks its group), largest first; `alive` is each one's size."""
    return (
        DuplicateGroup.objects.filter(gallery=gallery)
        .annotate(alive=Count("members"))
        .filter(alive__gte=2)
        .order_by("-alive", "id")
    )


def duplicate_group_of(*, image):
    """Return the open near-duplicate group holding `image`, or None."""
    return open_groups(gallery=image.gallery).filter(members__image=image).first()


def gallery_images_by_ids(*, gallery, user, ids):
    """The images of `gallery` among `ids` that `user` may see, in the order of `ids` (missing ones left out)."""
    found = {image.pk: image for image in gallery.images.visible_to(user).filter(pk__in=ids)}
    return [found[pk] for pk in ids if pk in found]


def trash_items_by_ids(*, gallery, ids):
    """The rows of `gallery`'s trash among `ids`."""
    return list(gallery.trash.filter(pk__in=ids).order_by("id"))


def gallery_exports(*, gallery):
    """The gallery's exports, newest first (each owner-only: the caller has checked the owner)."""
    return gallery.exports.select_related("gallery")


def export_for_owner(*, user, pk):
    """Return the export if `user` owns its gallery; 404 otherwise, staff included (only the owner downloads)."""
    export = (
        Export.objects.select_related("gallery").filter(pk=pk, gallery__owner_id=user.pk).first()
        if user.is_authenticated
        else None
    )
    if export is None:
        raise Http404("No such export.")
    return export
