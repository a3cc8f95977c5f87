"""Near-duplicates and the trash: review and resolve groups, export them, compare files, keep or skip a look-alike.

Every page here belongs to the gallery's owner: anyone else gets the same 404
as for a gallery that does not exist.
"""

import csv
import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models.fields.files import FieldFile
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from gallery import access, selectors, services
from gallery.models import DuplicateGroup, Image, TrashedImage
from gallery.views.common import wants_json
from gallery.views.media import _serve

GROUPS_PER_PAGE = 12
TRASH_PER_PAGE = 48
EXPORT_FIELDS = (
    "group",
    "keeper",
    "image_id",
    "name",
    "width",
    "height",
    "bytes",
    "uploaded",
    "distance",
    "hash_bits",
    "url",
)


def groups_page(gallery, number):
    groups = selectors.open_groups(gallery=gallery).select_related("keeper", "run__build")
    page = Paginator(groups, GROUPS_PER_PAGE).get_page(number)
    for group in page.object_list:
        group.rows = list(group.members.select_related("image").order_by("distance", "image_id"))
    return page


def grouping_state(gallery):
    """The run the groups come from, and whether a newer build is still being grouped."""
    build = gallery.current_build()
    run = getattr(build, "grouping", None) if build is not None else None
    latest = gallery.grouping_runs.select_related("build").order_by("-created_at").first()
    return {"run": latest, "pending": build is not None and run is None, "build": build}


@login_required
@require_GET
def review(request, slug):
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    page = groups_page(gallery, request.GET.get("page"))
    return render(
        request,
        "gallery/duplicates.html",
        {"gallery": gallery, "page": page, "trash_days": settings.IMAGESEARCH_TRASH_DAYS, **grouping_state(gallery)},
    )


def _back(request, gallery):
    page = request.POST.get("page")
    url = reverse("gallery_duplicates", args=[gallery.slug])
    return redirect(f"{url}?page={page}" if page and page.isdigit() else url)


@login_required
@require_POST
def resolve(request, slug, group_id):
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    group = DuplicateGroup.objects.filter(pk=group_id, gallery=gallery).first()
    if group is None:
        message = "That group is already resolved."
        if wants_json(request):
            return JsonResponse({"error": message}, status=404)
        messages.info(request, message)
        return _back(request, gallery)
    keeper = request.POST.get("keeper")
    try:
        trashed = services.group_resolve(
            group=group,
            actor=request.user,
            action=request.POST.get("action", ""),
            keeper_id=int(keeper) if keeper and keeper.isdigit() else None,
        )
    except services.ResolveError as exc:
        if wants_json(request):
            return JsonResponse({"error": str(exc)}, status=400)
        messages.error(request, str(exc))
        return _back(request, gallery)
    text = resolved_message(request.POST.get("action", ""), 1, trashed)
    if wants_json(request):
        return JsonResponse({"resolved": 1, "trashed": trashed, "message": text})
    messages.success(request, text)
    return _back(request, gallery)


def resolved_message(action, groups, trashed):
    if action == "trash_others":
        return f"{groups} group{'s' if groups != 1 else ''} resolved: {trashed} image{'s' if trashed != 1 else ''} moved to the trash."
    what = "kept as they are" if action == "keep_all" else "marked as not duplicates"
    return f"{groups} group{'s' if groups != 1 else ''} {what}; they will not be proposed again."


@login_required
@require_POST
def resolve_all(request, slug):
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    action = request.POST.get("action", "")
    try:
        groups, trashed = services.groups_resolve_all(gallery=gallery, actor=request.user, action=action)
    except services.ResolveError as exc:
        messages.error(request, str(exc))
        return _back(request, gallery)
    messages.success(request, resolved_message(action, groups, trashed))
    return redirect("gallery_duplicates", gallery.slug)


def export_rows(request, gallery):
    """Yield one dict per member of each open group (EXPORT_FIELDS)."""
    groups = selectors.open_groups(gallery=gallery).order_by("id")
    for group in groups.iterator(chunk_size=500):
        for member in group.members.select_related("image").order_by("distance", "image_id"):
            image = member.image
            yield {
                "group": group.pk,
                "keeper": image.pk == group.keeper_id,
                "image_id": image.pk,
                "name": image.original_name,
                "width": image.width,
                "height": image.height,
                "bytes": image.byte_size,
                "uploaded": image.created_at.isoformat(),
                "distance": round(member.distance, 6),
                "hash_bits": member.hash_bits,
                "url": request.build_absolute_uri(image.get_absolute_url()),
            }


def groups_json(request, gallery):
    """The open groups as nested JSON: each with its suggested keeper and members."""
    out: dict[int, dict] = {}
    for row in export_rows(request, gallery):
        group = out.setdefault(row["group"], {"id": row["group"], "keeper": None, "members": []})
        if row["keeper"]:
            group["keeper"] = row["image_id"]
        group["members"].append({k: v for k, v in row.items() if k not in ("group", "keeper")})
    return list(out.values())


@login_required
@require_GET
def export(request, slug, fmt):
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    filename = f"{gallery.slug}-duplicates.{fmt}"
    if fmt == "json":
        response = HttpResponse(
            json.dumps({"gallery": gallery.slug, "groups": groups_json(request, gallery)}, indent=1),
            content_type="application/json",
        )
    else:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        writer = csv.DictWriter(response, fieldnames=EXPORT_FIELDS)
        writer.writeheader()
        for row in export_rows(request, gallery):
            writer.writerow({**row, "name": csv_safe(row["name"])})
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def csv_safe(text):
    """A file name as a spreadsheet should show it: never a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# --- Compare ---------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def compare(request, slug):
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    results = None
    if request.method == "POST":
        files = request.FILES.getlist("images")
        if not files:
            messages.error(request, "Choose one or more image files to compare.")
        elif len(files) > settings.IMAGESEARCH_MAX_FILES_PER_REQUEST:
            messages.error(request, f"Too many files at once (limit {settings.IMAGESEARCH_MAX_FILES_PER_REQUEST}).")
        else:
            results = compare_files(gallery, files)
    return render(
        request,
        "gallery/compare.html",
        {"gallery": gallery, "results": results.results if results else None, "note": results.note if results else ""},
    )


COMPARE_BY_CONTENT = 24  # files per request embedded to compare by content (each costs the model a forward pass)


def compare_files(gallery, files):
    """Compare uploaded files with the gallery (services.files_compare); files over the size limit are not read."""
    limit = settings.IMAGESEARCH_MAX_UPLOAD_BYTES

    def read():
        for upload in files:
            yield upload.name, (upload.read() if upload.size <= limit else b"")

    compared = services.files_compare(
        gallery=gallery, files=read(), max_pixels=settings.IMAGESEARCH_MAX_PIXELS, content_limit=COMPARE_BY_CONTENT
    )
    too_large = f"The file is too large (the limit is {limit // 1048576} MB)."
    results = [
        services.Comparison(r.name, "rejected", too_large) if upload.size > limit else r
        for r, upload in zip(compared.results, files, strict=True)
    ]
    return services.Compared(results, compared.note)


# --- Keep or skip a look-alike at upload ----------------------------------


def _upload_pair(request, pk):
    image = selectors.image_for_view(user=request.user, pk=pk)
    if not access.can_edit(request.user, image.gallery):
        raise Http404("No such image.")
    like_id = request.POST.get("like", "")
    like = Image.objects.filter(pk=int(like_id), gallery=image.gallery).first() if like_id.isdigit() else None
    return image, like


def keep_response(request, pk):
    """Keep an upload that looked like `like` (POST field): JSON, for the upload list and the API."""
    image, like = _upload_pair(request, pk)
    if like is None:  # the look-alike was skipped or deleted meanwhile: nothing left to tell apart
        return JsonResponse({"kept": image.pk, "message": f"Kept “{image.original_name}”."})
    services.upload_keep(image=image, like=like, actor=request.user)
    return JsonResponse({"kept": image.pk, "message": f"Kept “{image.original_name}” beside “{like.original_name}”."})


def skip_response(request, pk):
    """Skip (trash) an upload that looked like `like`: JSON, for the upload list and the API."""
    image, like = _upload_pair(request, pk)
    services.upload_skip(image=image, like=like, actor=request.user)  # deletes the row: its pk is now None
    trash = reverse("gallery_trash", args=[image.gallery.slug])
    return JsonResponse({"skipped": pk, "message": f"“{image.original_name}” moved to the trash.", "trash": trash})


upload_keep = login_required(require_POST(keep_response))
upload_skip = login_required(require_POST(skip_response))


# --- The trash ---------------------------------------------------------------


@login_required
@require_GET
def trash(request, slug):
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    page = Paginator(gallery.trash.all(), TRASH_PER_PAGE).get_page(request.GET.get("page"))
    for item in page.object_list:
        item.expires_at = services.trash_expires_at(item)
    return render(
        request, "gallery/trash.html", {"gallery": gallery, "page": page, "trash_days": settings.IMAGESEARCH_TRASH_DAYS}
    )


@login_required
@require_POST
def trash_restore(request, slug):
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    ids = [int(v) for v in request.POST.getlist("item") if v.isdigit()]
    restored = 0
    for item in TrashedImage.objects.filter(gallery=gallery, pk__in=ids):
        outcome = services.trash_restore(item=item)
        if outcome.image is None:
            messages.warning(request, outcome.message)
        else:
            restored += 1
    if restored:
        messages.success(request, f"{restored} image{'s' if restored != 1 else ''} restored.")
    return redirect("gallery_trash", gallery.slug)


@login_required
@require_POST
def trash_purge(request, slug):
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    items = gallery.trash.all()
    if request.POST.get("all") != "1":
        items = items.filter(pk__in=[int(v) for v in request.POST.getlist("item") if v.isdigit()])
    n = services.trash_purge(items=items)
    messages.success(request, f"{n} image{'s' if n != 1 else ''} deleted for good.")
    return redirect("gallery_trash", gallery.slug)


@login_required
@require_GET
def trash_thumbnail(request, slug, pk):
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    item = TrashedImage.objects.filter(pk=pk, gallery=gallery).first()
    if item is None or not item.thumbnail:
        raise Http404("No such image.")
    field = Image._meta.get_field("thumbnail")
    return _serve(FieldFile(None, field, item.thumbnail), "image/jpeg", "thumbnail.jpg")
