"""Result pages: "find similar" of an image, and a search with an outside image."""

import base64

from django.shortcuts import render
from django.views.decorators.http import require_POST

from gallery import search, selectors
from gallery.embedding import imaging
from gallery.forms import QueryImageForm, SearchControlsForm
from gallery.views.common import K_CHOICES, QueryImageError, embed_query_file


def _preview_data_uri(upload):
    """Return a small JPEG of the (unstored) query picture as a data: URI, or None."""
    upload.seek(0)
    try:
        return "data:image/jpeg;base64," + base64.b64encode(imaging.thumbnail_jpeg(upload.read(), 160)).decode()
    except Exception:  # the search already succeeded; a missing preview is not worth an error
        return None


def _controls_error(errors):
    """One sentence naming each invalid search control and why, or None."""
    if not errors:
        return None
    labels = {"k": "Results", "max_distance": "Max distance", "page": "Page"}
    reasons = "; ".join(f"{labels.get(name, name)}: {' '.join(msgs)}" for name, msgs in errors.items())
    return f"Nothing was searched: {reasons}"


def image_similar(request, pk):
    image = selectors.image_for_view(user=request.user, pk=pk)
    (k, offset, max_distance, page), errors = SearchControlsForm.read(request.GET)
    error = _controls_error(errors)
    matches = (
        []
        if error
        else search.similar_to_image(user=request.user, image=image, k=k, offset=offset, max_distance=max_distance)
    )
    return render(
        request,
        "gallery/results.html",
        {
            "gallery": image.gallery,
            "query": image,
            "matches": matches,
            "k": k,
            "page": page,
            "max_distance": max_distance,
            "has_next": len(matches) == k,
            "k_choices": K_CHOICES,
            "error": error,
        },
        status=400 if error else 200,
    )


@require_POST
def gallery_search(request, slug):
    """Search the gallery with an outside image (not stored)."""
    gallery = selectors.gallery_for_view(user=request.user, slug=slug)
    form = QueryImageForm(request.POST, request.FILES)
    # k may come from the search form itself (no-JS) or from the query string.
    (k, offset, max_distance, _page), errors = SearchControlsForm.read(request.GET or request.POST)
    error, matches, preview = _controls_error(errors), [], None
    if error is None and not form.is_valid():
        error = "Choose an image file to search with."
    if error is None:  # the picture is embedded only for a search that can run
        try:
            vector = embed_query_file(form.cleaned_data["image"])
            preview = _preview_data_uri(form.cleaned_data["image"])
            matches = search.search_vector(
                user=request.user, gallery=gallery, vector=vector, k=k, offset=offset, max_distance=max_distance
            )
        except QueryImageError as exc:
            error = str(exc)
    return render(
        request,
        "gallery/results.html",
        {
            "gallery": gallery,
            "query": None,
            "query_name": request.FILES.get("image") and request.FILES["image"].name,
            "query_preview": preview,
            "matches": matches,
            "error": error,
            "k": k,
            "k_choices": K_CHOICES,
        },
        status=400 if error else 200,
    )
