"""Exports: the owner's page of them, asking for one, its status, and the download.

Everything here belongs to the gallery's owner alone: anyone else, staff
included, gets the same 404 as for a gallery that does not exist (staff see an
export's metadata in the admin, never its file).
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header, url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from gallery import selectors
from gallery.models import Export
from gallery.services import exports as services
from gallery.views.common import wants_json

CONTENT_TYPES = {"zip": "application/zip", "csv": "text/csv; charset=utf-8", "json": "application/json"}
LISTED = 50  # exports shown on the page: they expire after IMAGESEARCH_EXPORT_DAYS anyway


def export_json(request, export, *, api=False):
    """One export as the status JSON and the API describe it (`api`: its download URL takes Basic auth too)."""
    ready = export.status == Export.Status.READY and not services.export_is_expired(export)
    download = (
        reverse("api_export_download", args=[export.pk])
        if api
        else reverse("gallery_export_download", args=[export.gallery.slug, export.pk])
    )
    return {
        "id": export.pk,
        "kind": export.kind,
        "format": export.format,
        "params": {k: v for k, v in export.params.items() if k != "base_url"},
        "status": "expired" if services.export_is_expired(export) else export.status,
        "rows": export.row_count,
        "size_bytes": export.size_bytes,
        "embedding_version": export.embedding_version,
        "error": export.error,
        "created_at": export.created_at.isoformat(),
        "finished_at": export.finished_at.isoformat() if export.finished_at else None,
        "expires_at": services.export_expires_at(export).isoformat(),
        "download_url": request.build_absolute_uri(download) if ready else None,
    }


def params_from(data):
    """The query of a result list from form fields (image, outside, pos, neg, band, max_distance)."""
    params = {}
    for key in ("image", "outside", "band", "max_distance"):
        if data.get(key) not in (None, ""):
            params[key] = data.get(key)
    for key in ("pos", "neg"):
        values = data.getlist(key) if hasattr(data, "getlist") else data.get(key)
        if isinstance(values, str):
            values = [values]
        ids = [v for value in values or [] for v in str(value).split(",") if v.strip()]
        if ids:
            params[key] = ids
    return params


def request_from(request, gallery, data, params):
    """Ask for the export `data` names (kind, format); return the Export. Raise ExportError."""
    return services.export_request(
        user=request.user,
        gallery=gallery,
        kind=data.get("kind", ""),
        format=data.get("format", ""),
        params=params,
        base_url=request.build_absolute_uri("/"),
    )


def query_label(export):
    """What a result list was the result of, in a few words (the page's "What" column)."""
    params = export.params
    if "image" in params:
        label = f"similar to image #{params['image']}"
    elif "outside" in params:
        label = "nearest to an outside picture"
    elif "pos" in params:
        pos, neg = len(params["pos"]), len(params.get("neg", []))
        label = f"nearest to {pos} image{'s' if pos != 1 else ''}" + (f", less like {neg}" if neg else "")
    else:
        return ""
    if params.get("band"):
        label += f", {params['band']} or closer"
    if params.get("max_distance") is not None:
        label += f", distance <= {params['max_distance']:g}"
    return label


@login_required
@require_GET
def exports_page(request, slug):
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    items = list(selectors.gallery_exports(gallery=gallery)[:LISTED])
    for export in items:
        export.expires_at = services.export_expires_at(export)
        export.expired = services.export_is_expired(export)
        export.query_label = query_label(export)
    build = gallery.current_build()
    return render(
        request,
        "gallery/exports.html",
        {
            "gallery": gallery,
            "exports": items,
            "build": build,
            "busy": any(e.status in services.ACTIVE for e in items),
            "export_days": settings.IMAGESEARCH_EXPORT_DAYS,
        },
    )


@login_required
@require_POST
def export_create(request, slug):
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    try:
        export = request_from(request, gallery, request.POST, params_from(request.POST))
    except services.ExportError as exc:
        if wants_json(request):
            return JsonResponse({"error": str(exc)}, status=400)
        messages.error(request, f"Nothing was exported: {exc}")
        back = request.POST.get("next", "")
        if back and url_has_allowed_host_and_scheme(back, {request.get_host()}, require_https=request.is_secure()):
            return HttpResponseRedirect(back)
        return redirect("gallery_exports", gallery.slug)
    if wants_json(request):
        return JsonResponse(export_json(request, export), status=202)
    messages.success(request, f"Export #{export.pk} ({export.get_kind_display().lower()}) is being prepared.")
    return redirect("gallery_exports", gallery.slug)


@login_required
@require_GET
def exports_status(request, slug):
    """The exports' status, for the page's poll while some are pending."""
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    items = list(selectors.gallery_exports(gallery=gallery)[:LISTED])
    return JsonResponse({"exports": [export_json(request, e) for e in items]})


def download_response(export):
    """The export's file: streamed from storage, or a short-lived signed URL on S3. 404 unless ready."""
    if export.status != Export.Status.READY or not export.file or services.export_is_expired(export):
        raise Http404("This export is not ready, or has expired.")
    content_type = CONTENT_TYPES.get(export.format, "application/octet-stream")
    disposition = content_disposition_header(as_attachment=True, filename=services.export_download_name(export))
    if settings.S3_BUCKET:
        url = default_storage.url(
            export.file, parameters={"ResponseContentType": content_type, "ResponseContentDisposition": disposition}
        )
        response = HttpResponseRedirect(url)
        response["Cache-Control"] = "private, no-store"
        response["Referrer-Policy"] = "no-referrer"
        return response
    try:
        fh = default_storage.open(export.file, "rb")
    except FileNotFoundError:
        raise Http404("The export's file is missing.") from None
    response = FileResponse(fh, content_type=content_type)
    response["Content-Disposition"] = disposition
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_GET
def export_download(request, slug, pk):
    export = selectors.export_for_owner(user=request.user, pk=pk)
    if export.gallery.slug != slug:
        raise Http404("No such export.")
    return download_response(export)
