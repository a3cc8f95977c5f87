"""Acting on several images at once: move a selection to the trash, undo that, download it as a ZIP.

Trash and undo belong to the gallery's owner (anyone else gets the 404 of a
gallery that does not exist); a ZIP holds the selected originals the person
asking may see, so it is for anyone who may open the gallery.
"""

import zipfile

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from gallery import selectors, services
from gallery.views.common import wants_json
from gallery.views.media import _safe_name

# Images per bulk trash or undo request: four grid pages, far more than a person ticks by hand.
BULK_MAX = 200
ZIP_CHUNK = 1 << 20


def parse_ids(values):
    """Image or trash ids from repeated fields and comma lists ("1,2,3"), in order, without repeats."""
    out: dict[int, None] = {}
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if part.isdigit():
                out[int(part)] = None
    return list(out)


def trashed_json(gallery, trashed):
    n = len(trashed)
    return {
        "trashed": [item.pk for item in trashed],
        "count": n,
        "message": f"{n} image{'s' if n != 1 else ''} moved to the trash.",
        "undo": reverse("gallery_trash_undo", args=[gallery.slug]),
        "trash": reverse("gallery_trash", args=[gallery.slug]),
    }


@login_required
@require_POST
def images_trash(request, slug):
    """Move the selected images (fields `image`, repeated or comma-separated) to the trash."""
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    ids = parse_ids(request.POST.getlist("image"))
    if not ids or len(ids) > BULK_MAX:
        error = "Select at least one image." if not ids else f"At most {BULK_MAX} images at once; select fewer."
        if wants_json(request):
            return JsonResponse({"error": error}, status=400)
        messages.error(request, error)
        return redirect(gallery)
    images = selectors.gallery_images_by_ids(gallery=gallery, user=request.user, ids=ids)
    trashed = services.images_trash(images=images, actor=request.user)
    body = trashed_json(gallery, trashed)
    if wants_json(request):
        return JsonResponse(body)
    messages.success(request, body["message"] + " They can be restored from the trash.")
    return redirect(gallery)


@login_required
@require_POST
def trash_undo(request, slug):
    """Restore trash rows (fields `item`) and answer in JSON with each restored image's new id and URLs.

    The Undo of the "Moved to trash" notice: a picture uploaded again meanwhile
    stays in the trash, and its entry in `kept` says where the picture is.
    """
    gallery = selectors.gallery_for_owner(user=request.user, slug=slug)
    ids = parse_ids(request.POST.getlist("item"))
    if not ids or len(ids) > BULK_MAX:
        error = "Name the trashed images to restore." if not ids else f"At most {BULK_MAX} images at once."
        return JsonResponse({"error": error}, status=400)
    restored, kept = [], []
    for item in selectors.trash_items_by_ids(gallery=gallery, ids=ids):
        trash_id = item.pk  # restoring deletes the row, and with it the pk
        outcome = services.trash_restore(item=item)
        if outcome.image is None:
            kept.append({"trash_id": trash_id, "name": item.original_name, "message": outcome.message})
            continue
        image = outcome.image
        restored.append(
            {
                "trash_id": trash_id,
                "id": image.pk,
                "name": image.original_name,
                "url": image.get_absolute_url(),
                "thumbnail": reverse("image_thumb", args=[image.pk]),
                "file": reverse("image_file", args=[image.pk]),
            }
        )
    found = {r["trash_id"] for r in restored} | {k["trash_id"] for k in kept}
    missing = [pk for pk in ids if pk not in found]  # restored or purged already
    n = len(restored)
    message = f"{n} image{'s' if n != 1 else ''} restored." if n else "Nothing was restored."
    if kept:
        message += " " + " ".join(k["message"] for k in kept)
    return JsonResponse({"restored": restored, "kept": kept, "missing": missing, "message": message})


class _Sink:
    """A write-only, unseekable file for zipfile: what it writes is collected and handed out in chunks.

    Unseekable, zipfile writes each member's sizes after its data (a data
    descriptor), so the archive streams without a temporary file.
    """

    def __init__(self):
        self.parts: list[bytes] = []
        self.offset = 0

    def write(self, data):
        self.parts.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self):
        return self.offset

    def flush(self):
        pass

    def take(self):
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def zip_stream(images):
    """Yield a ZIP (stored, not recompressed: pictures are compressed already) of the images' originals."""
    sink = _Sink()
    used: set[str] = set()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for image in images:
            ext = image.file.name.rsplit(".", 1)[-1] if "." in image.file.name else "bin"
            name = _safe_name(image, ext)
            stem, _, suffix = name.rpartition(".")
            n = 2
            while name.lower() in used:
                name = f"{stem}-{n}.{suffix}"
                n += 1
            used.add(name.lower())
            try:
                source = image.file.storage.open(image.file.name, "rb")
            except FileNotFoundError:
                continue  # a file lost from storage is left out rather than breaking the whole download
            with source, archive.open(zipfile.ZipInfo(name, date_time=image.created_at.timetuple()[:6]), "w") as out:
                while chunk := source.read(ZIP_CHUNK):
                    out.write(chunk)
                    yield sink.take()
            yield sink.take()
    yield sink.take()


def zip_refusal(images, ids):
    """The reason a ZIP of `images` is refused, or ""."""
    max_images, max_mb = settings.IMAGESEARCH_ZIP_MAX_IMAGES, settings.IMAGESEARCH_ZIP_MAX_MB
    if not ids:
        return "Select at least one image to download."
    if len(ids) > max_images:
        return f"{len(ids)} images selected; a download holds at most {max_images}. Select fewer and download in parts."
    if not images:
        return "None of the selected images is here any more."
    total = sum(image.byte_size for image in images)
    if total > max_mb * 1048576:
        return (
            f"The selected originals add up to {total / 1048576:.0f} MB; a download holds at most {max_mb} MB. "
            "Select fewer and download in parts."
        )
    return ""


@require_GET
def images_zip(request, slug):
    """A ZIP of the selected originals (`ids=1,2,3`) the person asking may see; `check=1` only says whether it would go."""
    gallery = selectors.gallery_for_view(user=request.user, slug=slug)
    ids = parse_ids(request.GET.getlist("ids"))
    images = (
        selectors.gallery_images_by_ids(gallery=gallery, user=request.user, ids=ids)
        if 0 < len(ids) <= settings.IMAGESEARCH_ZIP_MAX_IMAGES
        else []
    )
    refusal = zip_refusal(images, ids)
    if request.GET.get("check") == "1":
        body = {"count": len(images), "bytes": sum(i.byte_size for i in images), "ok": not refusal}
        return JsonResponse({**body, "error": refusal} if refusal else body, status=400 if refusal else 200)
    if refusal:
        if wants_json(request):
            return JsonResponse({"error": refusal}, status=400)
        context = {"error_code": 400, "error_title": "Download refused", "error_message": refusal}
        return render(request, "errors/_error.html", context, status=400)
    response = StreamingHttpResponse(zip_stream(images), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{gallery.slug}-{len(images)}-images.zip"'
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
