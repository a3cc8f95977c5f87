"""Error pages in the site's style, and JSON errors for scripts and the upload XHR.

Django turns an oversized request body (RequestDataTooBig) and too many files
(TooManyFilesSent) into a SuspiciousOperation answered by handler400; this
module tells those apart so people see "upload too large" (413), not a bare 400.
"""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.http import HttpResponseServerError, JsonResponse
from django.shortcuts import render
from django.template import loader

from gallery.views.common import wants_json


def _respond(request, status, title, message, template="errors/_error.html", **extra):
    if wants_json(request) or request.path.startswith("/api/"):
        return JsonResponse({"error": message}, status=status)
    context = {"error_code": status, "error_title": title, "error_message": message, **extra}
    return render(request, template, context, status=status)


def bad_request(request, exception=None):
    max_mb = settings.IMAGESEARCH_MAX_UPLOAD_BYTES // (1024 * 1024)
    max_files = settings.IMAGESEARCH_MAX_FILES_PER_REQUEST
    max_request_mb = getattr(settings, "IMAGESEARCH_MAX_REQUEST_BYTES", 0) // (1024 * 1024)
    limits = {"max_upload_mb": max_mb, "max_files": max_files, "max_request_mb": max_request_mb}
    if isinstance(exception, RequestDataTooBig):
        return _respond(
            request,
            413,
            "Upload too large",
            "The upload was larger than this server accepts in one request, so nothing was saved.",
            "errors/413.html",
            **limits,
        )
    if isinstance(exception, TooManyFilesSent):
        return _respond(
            request,
            400,
            "Too many files at once",
            f"One upload may carry at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files, so nothing was saved.",
            "errors/413.html",
            **limits,
        )
    return _respond(request, 400, "Bad request", "The request could not be understood. Please try again.")


def permission_denied(request, exception=None):
    return _respond(request, 403, "Not allowed", "You do not have permission to do that.")


def not_found(request, exception=None):
    return _respond(request, 404, "Not found", "There is nothing here, or you do not have access to it.")


def server_error(request):
    if wants_json(request) or request.path.startswith("/api/"):
        return JsonResponse({"error": "Server error. It has been logged; try again later."}, status=500)
    # No request context: context processors touch the database, which may be what failed.
    return HttpResponseServerError(loader.get_template("errors/500.html").render())
