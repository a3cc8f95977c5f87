"""Request-level limits that Django itself does not apply."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig


class RequestSizeLimitMiddleware:
    """Refuse a request whose declared body exceeds IMAGESEARCH_MAX_REQUEST_BYTES.

    Django caps form fields (DATA_UPLOAD_MAX_MEMORY_SIZE) but streams any
    amount of file data to temporary files. Checking Content-Length here
    refuses an oversized upload before its body is read; RequestDataTooBig is
    answered by handler400 as "upload too large" (413). A body without
    Content-Length (chunked) is bounded by the front proxy, as documented.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.IMAGESEARCH_MAX_REQUEST_BYTES:
            raise RequestDataTooBig(
                f"Request body of {length} bytes exceeds IMAGESEARCH_MAX_REQUEST_BYTES "
                f"({settings.IMAGESEARCH_MAX_REQUEST_BYTES})."
            )
        return self.get_response(request)
