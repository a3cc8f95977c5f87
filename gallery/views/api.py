"""JSON API: the same permissions as the pages (404 for what a user may not see).

Authenticate with the session (and its CSRF token for POST) or HTTP Basic
(`curl -u user:password`), which needs no CSRF token.
"""

import base64
import binascii
from functools import lru_cache, wraps

from django.contrib.auth import authenticate
from django.http import JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import get_script_prefix, reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from gallery import selectors, services
from gallery.forms import SearchControlsForm
from gallery.views.common import QueryImageError, embed_query_file


def _basic_user(request):
    header = request.META.get("HTTP_AUTHORIZATION", "")  # (request.headers would copy every header first)
    if not header.lower().startswith("basic "):
        return None
    try:
        username, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return authenticate(request, username=username, password=password) or False


def api_view(view):
    """Authenticate by Basic auth or session; enforce CSRF for session POSTs; JSON 401/404s."""

    @csrf_exempt
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        user = _basic_user(request)
        if user is False:
            return JsonResponse({"error": "Invalid credentials."}, status=401, headers={"WWW-Authenticate": "Basic"})
        if user is not None:
            request.user = user
        elif request.method == "POST":
            rejected = CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})
            if rejected is not None:
                return JsonResponse({"error": "CSRF check failed."}, status=403)
        try:
            return view(request, *args, **kwargs)
        except selectors.Http404 as exc:
            return JsonResponse({"error": str(exc) or "Not found."}, status=404)

    return wrapper


_PK = 987654321  # reversed once, then replaced: reverse() per result costs more than the search


@lru_cache(maxsize=8)
def _result_links(script_prefix):
    """The page and thumbnail URLs of image _PK under this script prefix (reverse() reads it)."""
    return tuple(reverse(name, kwargs={"pk": _PK}) for name in ("image_detail", "image_thumb"))


def _results_json(matches):
    page, thumb = _result_links(get_script_prefix())
    return [
        {
            "rank": m.rank,
            "id": m.image.pk,
            "name": m.image.original_name,
            "distance": round(m.distance, 6),
            "similarity": round(m.similarity, 2),
            "url": page.replace(str(_PK), str(m.image.pk)),
            "thumbnail": thumb.replace(str(_PK), str(m.image.pk)),
        }
        for m in matches
    ]


def _controls(request):
    values, errors = SearchControlsForm.read(request.GET)
    if errors:
        return None, JsonResponse({"error": "Invalid parameters.", "fields": errors}, status=400)
    return values, None


@api_view
@require_GET
def similar(request, pk):
    image = selectors.image_for_view(user=request.user, pk=pk)
    values, error = _controls(request)
    if error:
        return error
    k, offset, max_distance, page = values
    matches = selectors.similar_images(user=request.user, image=image, k=k, offset=offset, max_distance=max_distance)
    return JsonResponse(
        {"query": image.pk, "state": image.embedding_state, "k": k, "page": page, "results": _results_json(matches)}
    )


@api_view
@require_POST
def search(request, slug):
    gallery = selectors.gallery_for_view(user=request.user, slug=slug)
    values, error = _controls(request)
    if error:
        return error
    k, offset, max_distance, page = values
    upload = request.FILES.get("image")
    if upload is None:
        return JsonResponse({"error": "Send the query image as the multipart field 'image'."}, status=400)
    try:
        vector = embed_query_file(upload)
    except QueryImageError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    matches = selectors.search_vector(user=request.user, gallery=gallery, vector=vector, k=k, offset=offset, max_distance=max_distance)
    return JsonResponse({"k": k, "page": page, "results": _results_json(matches)})


@api_view
@require_GET
def status(request, slug):
    gallery = selectors.gallery_for_view(user=request.user, slug=slug)
    return JsonResponse(selectors.gallery_status(gallery=gallery))


@api_view
@require_POST
def upload(request, slug):
    if not request.user.is_authenticated:
        return JsonResponse({"error": "Not found."}, status=404)
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    files = request.FILES.getlist("images")
    if not files:
        return JsonResponse({"error": "Send one or more files as the multipart field 'images'."}, status=400)
    results = services.images_upload(gallery=gallery, uploader=request.user, files=files)
    return JsonResponse({"results": [r.as_dict() for r in results]})
