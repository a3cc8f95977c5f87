"""The gallery map (2-D layout, its points and names) and results of several images (positives and negatives)."""

from urllib.parse import urlencode

import numpy as np
from django.conf import settings
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from gallery import access, search, selectors
from gallery.analysis import layout
from gallery.forms import SearchControlsForm
from gallery.search import multi
from gallery.views.results import _controls_error, _render_results

NAMES_PER_REQUEST = 500  # the map asks for the names of the points under the cursor or in a lasso, a page at a time


@require_GET
def gallery_map(request, slug):
    gallery = selectors.gallery_for_view(user=request.user, slug=slug)
    state = selectors.gallery_map(gallery=gallery)
    return render(
        request,
        "gallery/map.html",
        {
            "gallery": gallery,
            "map": state.record,
            "state": state.state,
            # Why a map failed names settings and packages: for the owner and staff.
            "error": state.error if access.sees_every_image(request.user, gallery) else "",
            "index_dirty": gallery.index_dirty,
            "max_query_images": settings.IMAGESEARCH_MAX_QUERY_IMAGES,
        },
    )


@require_GET
def gallery_map_points(request, slug):
    """The map's coordinates file, without the images the viewer may not see (layout.FORMAT)."""
    gallery = selectors.gallery_for_view(user=request.user, slug=slug)
    record = selectors.gallery_map(gallery=gallery).record
    if record is None:
        raise Http404("This gallery has no map yet.")
    try:
        ids, xy = layout.read(gallery.pk, record.build.version)
    except layout.MapFileError as exc:
        raise Http404("The map's file cannot be read; it is laid out again after the next build.") from exc
    # Both sorted and unique: a rejected, trashed, deleted or (for a stranger)
    # unmoderated image is dropped here, on the server, never sent to be hidden.
    keep = np.isin(ids, selectors.map_visible_ids(user=request.user, gallery=gallery), assume_unique=True)
    response = HttpResponse(layout.encode(ids[keep], xy[keep]), content_type="application/octet-stream")
    response["Cache-Control"] = "private, no-store"  # differs per viewer, and changes with moderation
    response["X-Map-Version"] = str(record.build.version)
    response["X-Map-Method"] = record.method
    return response


@require_GET
def gallery_map_names(request, slug):
    """{"names": {id: name}} of the images among ?ids=1,2,3 that the viewer may see (at most NAMES_PER_REQUEST)."""
    gallery = selectors.gallery_for_view(user=request.user, slug=slug)
    try:
        ids = multi.parse_ids(request.GET.get("ids"), name="ids")
    except multi.QueryImagesError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    if len(ids) > NAMES_PER_REQUEST:
        return JsonResponse({"error": f"At most {NAMES_PER_REQUEST} ids a request."}, status=400)
    names = selectors.map_names(user=request.user, gallery=gallery, ids=ids)
    return JsonResponse({"names": {str(pk): name for pk, name in names.items()}})


def similar_many_url(gallery, positives, negatives, **params):
    """The URL of the results of several images: /g/<slug>/similar/?pos=1,2&neg=3 (and any controls given)."""
    query = {"pos": ",".join(map(str, positives))}
    if negatives:
        query["neg"] = ",".join(map(str, negatives))
    query.update({name: value for name, value in params.items() if value not in (None, "")})
    return f"{reverse('gallery_similar_many', args=[gallery.slug])}?{urlencode(query, safe=',')}"


@require_GET
def gallery_similar_many(request, slug):
    """Results of several images of a gallery: ?pos=1,2,3 (more like these) &neg=4 (less like this)."""
    gallery = selectors.gallery_for_view(user=request.user, slug=slug)
    controls, errors = SearchControlsForm.read(request.GET)
    error = _controls_error(errors)
    positives: list[int] = []
    negatives: list[int] = []
    results = search.Results([])
    try:
        positives = multi.parse_ids(request.GET.get("pos"), name="pos")
        negatives = multi.parse_ids(request.GET.get("neg"), name="neg")
        if error is None:
            results = search.similar_to_images(
                user=request.user,
                gallery=gallery,
                positives=positives,
                negatives=negatives,
                k=controls.k,
                offset=controls.offset,
                max_distance=controls.max_distance,
                band=controls.band,
                counts=True,
            )
    except multi.QueryImagesError as exc:
        error = f"Nothing was searched: {exc}"
    shown = {
        image.pk: image
        for image in selectors.visible_images_in_order(user=request.user, gallery=gallery, ids=positives + negatives)
    }
    controls_params = {"k": controls.k, "band": controls.band, "max_distance": controls.max_distance}

    def card(pk, kind):
        """A query image as the page shows it, with the URL of the same search without it."""
        keep_pos = [p for p in positives if p != pk]
        keep_neg = [n for n in negatives if n != pk]
        image = shown.get(pk)
        return {
            "pk": pk,
            "image": image,
            "kind": kind,
            # Without its last positive the search has nothing to start from: the link leaves it out.
            "remove_url": similar_many_url(gallery, keep_pos, keep_neg, **controls_params) if keep_pos else None,
        }

    query_images = {
        "positives": [card(pk, "positive") for pk in positives],
        "negatives": [card(pk, "negative") for pk in negatives],
        "pos": ",".join(map(str, positives)),
        "neg": ",".join(map(str, negatives)),
        "extra": "&"
        + urlencode({"pos": ",".join(map(str, positives)), "neg": ",".join(map(str, negatives))}, safe=","),
        "max": settings.IMAGESEARCH_MAX_QUERY_IMAGES,
    }
    return _render_results(request, gallery, controls, results, error, query=None, multi=query_images)
