"""JSON API of several images: results nearest some images of a gallery (positives) and away from others (negatives)."""

import json

from django.http import JsonResponse
from django.views.decorators.http import require_http_methods

from gallery import search, selectors
from gallery.api.auth import api_view
from gallery.api.schemas import results_json
from gallery.forms import SearchControlsForm
from gallery.search import multi

BODY_FIELDS = {"positives", "negatives", "k", "page", "band", "max_distance"}


def _request_values(request):
    """Return (positives, negatives, controls query dict) from GET ?pos=&neg= or a JSON POST body. Raise ValueError."""
    if request.method == "GET":
        return request.GET.get("pos"), request.GET.get("neg"), request.GET
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        raise ValueError("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ValueError('Send a JSON object: {"positives": [1, 2], "negatives": [3]}.')
    unknown = sorted(set(data) - BODY_FIELDS)
    if unknown:
        raise ValueError(f"Unknown field(s): {', '.join(unknown)} (expected {', '.join(sorted(BODY_FIELDS))}).")
    for name in ("positives", "negatives"):
        if not isinstance(data.get(name, []), list):
            raise ValueError(f"{name} must be a list of image ids.")
    controls = {name: str(data[name]) for name in ("k", "page", "band", "max_distance") if data.get(name) is not None}
    return data.get("positives"), data.get("negatives"), controls


@api_view
@require_http_methods(["GET", "POST"])
def similar_many(request, slug):
    """GET ?pos=1,2&neg=3 or POST {"positives": [1, 2], "negatives": [3]}: JSON like api_similar, for several images."""
    gallery = selectors.gallery_for_view(user=request.user, slug=slug)
    try:
        raw_pos, raw_neg, controls_data = _request_values(request)
        positives = multi.parse_ids(raw_pos, name="positives")
        negatives = multi.parse_ids(raw_neg, name="negatives")
    except ValueError as exc:  # QueryImagesError is one
        return JsonResponse({"error": str(exc)}, status=400)
    values, errors = SearchControlsForm.read(controls_data)
    if errors:
        return JsonResponse({"error": "Invalid parameters.", "fields": errors}, status=400)
    k, offset, max_distance, page, band = values
    try:
        results = search.similar_to_images(
            user=request.user,
            gallery=gallery,
            positives=positives,
            negatives=negatives,
            k=k,
            offset=offset,
            max_distance=max_distance,
            band=band,
        )
    except multi.QueryImagesError as exc:
        body = {"error": str(exc)}
        if exc.ids:
            body["ids"] = exc.ids
        return JsonResponse(body, status=400)
    return JsonResponse(
        {
            "gallery": gallery.slug,
            "positives": positives,
            "negatives": negatives,
            "k": k,
            "page": page,
            "results": results_json(results.matches),
        }
    )
