"""Image files, served only after a permission check.

On local disk the file is streamed from storage; on S3 the response is a
redirect to a short-lived signed URL (IMAGESEARCH_S3_URL_EXPIRE seconds) on a
private bucket. Either way a stranger cannot reach a private gallery's file by
guessing a URL, and gets the same 404 as for an id that does not exist.
"""

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponseRedirect
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from gallery import selectors


def _serve(storage_file, content_type, download_name):
    if not storage_file:
        raise Http404("No file.")
    disposition = content_disposition_header(as_attachment=False, filename=download_name)
    if settings.S3_BUCKET:
        # S3 answers with these headers, so the object's stored metadata cannot
        # make a browser render it as something else.
        url = storage_file.storage.url(
            storage_file.name,
            parameters={"ResponseContentType": content_type, "ResponseContentDisposition": disposition},
        )
        response = HttpResponseRedirect(url)
        response["Cache-Control"] = "private, no-store"  # the signed URL expires: never cache the redirect
        response["Referrer-Policy"] = "no-referrer"
        return response
    try:
        fh = storage_file.storage.open(storage_file.name, "rb")
    except FileNotFoundError:
        raise Http404("The file is missing.") from None
    response = FileResponse(fh, content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Disposition"] = disposition
    response["Cache-Control"] = "private, max-age=3600"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


def _safe_name(image, ext):
    """Return a download name of letters, digits, '-', '_' and '.', ending in the stored type's extension."""
    stem = image.original_name.rsplit(".", 1)[0]
    safe = "".join(ch if (ch.isascii() and ch.isalnum()) or ch in "-_." else "_" for ch in stem).strip("._")
    return f"{safe[:80] or 'image'}.{ext}"


@require_GET
def image_file(request, pk):
    image = selectors.image_for_view(user=request.user, pk=pk)
    ext = image.file.name.rsplit(".", 1)[-1]
    return _serve(image.file, image.content_type, _safe_name(image, ext))


@require_GET
def image_thumbnail(request, pk):
    image = selectors.image_for_view(user=request.user, pk=pk)
    return _serve(image.thumbnail, "image/jpeg", _safe_name(image, "jpg"))
