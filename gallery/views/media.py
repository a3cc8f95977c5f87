"""Image files, served only after a permission check.

On local disk the file is streamed from storage; on S3 the response is a
redirect to a short-lived signed URL. Either way a stranger cannot reach a
private gallery's file by guessing a URL.
"""

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponseRedirect
from django.views.decorators.http import require_GET

from gallery import selectors


def _serve(storage_file, content_type, download_name):
    if not storage_file:
        raise Http404("No file.")
    if settings.S3_BUCKET:
        return HttpResponseRedirect(storage_file.storage.url(storage_file.name))
    try:
        fh = storage_file.storage.open(storage_file.name, "rb")
    except FileNotFoundError:
        raise Http404("The file is missing.") from None
    response = FileResponse(fh, content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Disposition"] = f"inline; filename=\"{download_name}\""
    response["Cache-Control"] = "private, max-age=3600"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


def _ascii_name(image, ext):
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in image.original_name.rsplit(".", 1)[0])
    return f"{safe[:80] or 'image'}.{ext}"


@require_GET
def image_file(request, pk):
    image = selectors.image_for_view(user=request.user, pk=pk)
    ext = image.file.name.rsplit(".", 1)[-1]
    return _serve(image.file, image.content_type, _ascii_name(image, ext))


@require_GET
def image_thumbnail(request, pk):
    image = selectors.image_for_view(user=request.user, pk=pk)
    return _serve(image.thumbnail, "image/jpeg", _ascii_name(image, "jpg"))
