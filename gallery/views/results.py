"""Result pages: "find similar" of an image, and a search with an outside image."""

import base64

from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from gallery import search, selectors
from gallery.forms import QueryImageForm, SearchControlsForm
from gallery.search import bands, queries
from gallery.services import outside_queries
from gallery.views.common import (
    K_CHOICES,
    QueryImageError,
    embed_query_file,
    outside_results_url,
    query_error_message,
    query_error_status,
)


def _controls_error(errors):
    """One sentence naming each invalid search control and why, or None."""
    if not errors:
        return None
    labels = {"k": "Results", "max_distance": "Max distance", "band": "Show", "page": "Page"}
    reasons = "; ".join(f"{labels.get(name, name)}: {' '.join(msgs)}" for name, msgs in errors.items())
    return f"Nothing was searched: {reasons}"


def _band_options(results, controls):
    """The threshold control: one option per band with how many results it holds (or "100+")."""
    options = [{"value": "", "label": "Any distance", "count": None, "selected": not controls.band}]
    for key, label, _rank in bands.BANDS[:-1]:  # "distant" is what "any distance" adds
        count = results.counts.get(key)
        shown = None if count is None else (f"{count}+" if key in results.saturated else str(count))
        options.append({"value": key, "label": label, "count": shown, "selected": controls.band == key})
    return options


def _render_results(request, gallery, controls, results, error, **query):
    """The results page of "find similar" or of a stored outside search."""
    matches = results.matches
    return render(
        request,
        "gallery/results.html",
        {
            "gallery": gallery,
            "matches": matches,
            "k": controls.k,
            "page": controls.page,
            "max_distance": controls.max_distance,
            "band": controls.band,
            "band_options": _band_options(results, controls) if results.counts else None,
            "has_next": len(matches) == controls.k,
            "k_choices": K_CHOICES,
            "error": error,
            **query,
        },
        status=400 if error else 200,
    )


def image_similar(request, pk):
    image = selectors.image_for_view(user=request.user, pk=pk)
    controls, errors = SearchControlsForm.read(request.GET)
    error = _controls_error(errors)
    results = (
        search.Results([])
        if error
        else search.similar_results(
            user=request.user,
            image=image,
            k=controls.k,
            offset=controls.offset,
            max_distance=controls.max_distance,
            band=controls.band,
            counts=True,
        )
    )
    return _render_results(request, image.gallery, controls, results, error, query=image)


@require_POST
def gallery_search(request, slug):
    """Search the gallery with an outside image: store its vector, then redirect (303) to the results' GET URL.

    The picture itself is not stored. A search that cannot run (an invalid
    control, a file that is not a picture, no query worker) answers with the
    reason on the results page, and nothing is stored.
    """
    gallery = selectors.gallery_for_view(user=request.user, slug=slug)
    form = QueryImageForm(request.POST, request.FILES)
    # k may come from the search form itself (no-JS) or from the query string.
    controls, errors = SearchControlsForm.read(request.GET or request.POST)
    error, status = _controls_error(errors), 400
    if error is None and not form.is_valid():
        error = "Choose an image file to search with."
    if error is None:  # the picture is embedded only for a search that can run
        upload = form.cleaned_data["image"]
        try:
            vector, data = embed_query_file(upload, gallery=gallery)
        except QueryImageError as exc:
            error, status = query_error_message(exc, request.user), query_error_status(exc)
        else:
            stored = outside_queries.outside_query_create(
                gallery=gallery, user=request.user, name=upload.name, query=vector, picture=data
            )
            response = HttpResponseRedirect(
                outside_results_url(
                    gallery, stored, k=controls.k, max_distance=controls.max_distance, band=controls.band
                )
            )
            response.status_code = 303  # See Other: reloading the results page GETs, never posts again
            return response
    return render(
        request,
        "gallery/results.html",
        {
            "gallery": gallery,
            "query": None,
            "query_name": request.FILES.get("image") and request.FILES["image"].name,
            "matches": [],
            "error": error,
            "k": controls.k,
            "k_choices": K_CHOICES,
        },
        status=status,
    )


def _preview_data_uri(thumbnail):
    return "data:image/jpeg;base64," + base64.b64encode(bytes(thumbnail)).decode() if thumbnail else None


@require_GET
def gallery_search_results(request, slug, token):
    """The results of a stored outside search, for anyone who may open the gallery (filtered for them)."""
    gallery = selectors.gallery_for_view(user=request.user, slug=slug)
    try:
        stored = queries.stored_query(gallery=gallery, token=token)
    except queries.StoredQueryMissing as exc:
        return _query_gone(request, gallery, str(exc), status=404)
    except queries.StoredQueryGone as exc:
        return _query_gone(request, gallery, str(exc), status=410)
    controls, errors = SearchControlsForm.read(request.GET)
    error = _controls_error(errors)
    results = (
        search.Results([])
        if error
        else search.search_results(
            user=request.user,
            gallery=gallery,
            vector=queries.stored_vector(stored),
            k=controls.k,
            offset=controls.offset,
            max_distance=controls.max_distance,
            band=controls.band,
            query_hashes=queries.stored_hashes(stored),
            counts=True,
        )
    )
    return _render_results(
        request,
        gallery,
        controls,
        results,
        error,
        query=None,
        query_name=stored.original_name,
        query_preview=_preview_data_uri(stored.thumbnail),
        query_url=request.path,
    )


def _query_gone(request, gallery, message, *, status):
    return render(
        request,
        "gallery/query_gone.html",
        {"gallery": gallery, "message": message, "response_status": status},
        status=status,
    )
