"""JSON API: the same permissions as the pages (404 for what a user may not see).

Authenticate with the session (and its CSRF token for POST) or HTTP Basic
(`curl -u user:password`), which needs no CSRF token (gallery.api.auth).
"""

import json

from django.conf import settings
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from gallery import search, selectors, services
from gallery.api.auth import api_view
from gallery.api.schemas import outside_search_json, results_json
from gallery.forms import SearchControlsForm
from gallery.models import DuplicateGroup
from gallery.services import exports as export_services
from gallery.services import outside_queries
from gallery.views import duplicates as dup_views
from gallery.views import exports as export_views
from gallery.views.common import (
    QueryImageError,
    embed_query_file,
    outside_results_url,
    query_error_message,
    query_error_status,
)


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
    k, offset, max_distance, page, band = values
    matches = search.similar_to_image(
        user=request.user, image=image, k=k, offset=offset, max_distance=max_distance, band=band
    )
    return JsonResponse(
        {"query": image.pk, "state": image.embedding_state, "k": k, "page": page, "results": results_json(matches)}
    )


@api_view
@require_POST
def search_gallery(request, slug):
    gallery = selectors.gallery_for_view(user=request.user, slug=slug)
    values, error = _controls(request)
    if error:
        return error
    k, offset, max_distance, page, band = values
    upload = request.FILES.get("image")
    if upload is None:
        return JsonResponse({"error": "Send the query image as the multipart field 'image'."}, status=400)
    try:
        query, data = embed_query_file(upload, gallery=gallery)
    except QueryImageError as exc:
        return JsonResponse({"error": query_error_message(exc, request.user)}, status=query_error_status(exc))
    stored = outside_queries.outside_query_create(
        gallery=gallery, user=request.user, name=upload.name, query=query, picture=data
    )
    matches = search.search_vector(
        user=request.user,
        gallery=gallery,
        vector=query.vector,
        k=k,
        offset=offset,
        max_distance=max_distance,
        band=band,
        query_hashes=query.hashes,
    )
    url = outside_results_url(
        gallery, stored, k=k, max_distance=max_distance, band=band, page=page if page > 1 else None
    )
    return JsonResponse(
        outside_search_json(
            k=k,
            page=page,
            matches=matches,
            url=request.build_absolute_uri(url),
            expires_at=outside_queries.outside_query_expires_at(stored),
        )
    )


@api_view
@require_GET
def status(request, slug):
    gallery = selectors.gallery_for_view(user=request.user, slug=slug)
    return JsonResponse(selectors.gallery_status(gallery=gallery, detailed=request.user.is_staff))


@api_view
@require_POST
def upload(request, slug):
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    files = request.FILES.getlist("images")
    if not files:
        return JsonResponse({"error": "Send one or more files as the multipart field 'images'."}, status=400)
    results = services.images_upload(gallery=gallery, uploader=request.user, files=files)
    return JsonResponse({"results": [r.as_dict() for r in results]})


# --- Near-duplicates, compare, look-alikes at upload: the owner's, as on the pages ---

API_GROUPS_PER_PAGE = 100


@api_view
@require_GET
def duplicates(request, slug):
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    state = dup_views.grouping_state(gallery)
    run = state["run"]
    groups = dup_views.groups_json(request, gallery)
    page = Paginator(groups, API_GROUPS_PER_PAGE).get_page(request.GET.get("page"))
    return JsonResponse(
        {
            "gallery": gallery.slug,
            "run": None
            if run is None
            else {
                "index_version": run.build.version,
                "status": run.status,
                "images_compared": run.item_count,
                "seconds": round(run.duration_seconds, 2),
                "error": run.error,
            },
            "pending": state["pending"],
            "count": page.paginator.count,
            "page": page.number,
            "pages": page.paginator.num_pages,
            "groups": list(page.object_list),
        }
    )


@api_view
@require_POST
def duplicates_resolve(request, slug, group_id):
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    group = DuplicateGroup.objects.filter(pk=group_id, gallery=gallery).first()
    if group is None:
        return JsonResponse({"error": "No such group (already resolved?)."}, status=404)
    keeper = request.POST.get("keeper", "")
    action = request.POST.get("action", "")
    try:
        trashed = services.group_resolve(
            group=group, actor=request.user, action=action, keeper_id=int(keeper) if keeper.isdigit() else None
        )
    except services.ResolveError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"resolved": 1, "trashed": trashed, "message": dup_views.resolved_message(action, 1, trashed)})


@api_view
@require_POST
def duplicates_resolve_all(request, slug):
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    action = request.POST.get("action", "")
    try:
        groups, trashed = services.groups_resolve_all(gallery=gallery, actor=request.user, action=action)
    except services.ResolveError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse(
        {"resolved": groups, "trashed": trashed, "message": dup_views.resolved_message(action, groups, trashed)}
    )


@api_view
@require_POST
def compare(request, slug):
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    files = request.FILES.getlist("images")
    if not files:
        return JsonResponse({"error": "Send one or more files as the multipart field 'images'."}, status=400)
    if len(files) > settings.IMAGESEARCH_MAX_FILES_PER_REQUEST:
        limit = settings.IMAGESEARCH_MAX_FILES_PER_REQUEST
        return JsonResponse({"error": f"Too many files at once (limit {limit})."}, status=400)
    compared = dup_views.compare_files(gallery, files)
    return JsonResponse({"results": [r.as_dict() for r in compared.results], "note": compared.note})


@api_view
@require_POST
def image_keep(request, pk):
    return dup_views.keep_response(request, pk)


@api_view
@require_POST
def image_skip(request, pk):
    return dup_views.skip_response(request, pk)


# --- Exports: the owner's alone (staff included, anyone else gets 404) ---


@api_view
@require_http_methods(["GET", "POST"])
def exports(request, slug):
    """GET: the gallery's exports. POST: ask for one (form fields, or a JSON body {"kind", "format", "params"})."""
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    if request.method == "GET":
        items = selectors.gallery_exports(gallery=gallery)[: export_views.LISTED]
        return JsonResponse(
            {"gallery": gallery.slug, "exports": [export_views.export_json(request, e, api=True) for e in items]}
        )
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            return JsonResponse({"error": "The body is not valid JSON."}, status=400)
        if not isinstance(data, dict) or not isinstance(data.get("params", {}), dict):
            return JsonResponse({"error": 'Send {"kind": ..., "format": ..., "params": {...}}.'}, status=400)
        params = data.get("params", {})
    else:
        data, params = request.POST, export_views.params_from(request.POST)
    try:
        export = export_views.request_from(request, gallery, data, params)
    except export_services.ExportError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse(export_views.export_json(request, export, api=True), status=202)


@api_view
@require_GET
def export_detail(request, pk):
    export = selectors.export_for_owner(user=request.user, pk=pk)
    return JsonResponse(export_views.export_json(request, export, api=True))


@api_view
@require_GET
def export_download(request, pk):
    """The export's file, for Basic-auth clients as for the session (as on the Exports page)."""
    return export_views.download_response(selectors.export_for_owner(user=request.user, pk=pk))
