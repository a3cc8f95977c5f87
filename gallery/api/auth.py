"""API authentication: HTTP Basic (`curl -u user:password`, no CSRF token needed) or the session
(with its CSRF token for POST); JSON 401/403/404 instead of pages."""

import base64
import binascii
from functools import wraps

from django.contrib.auth import authenticate
from django.http import Http404, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt


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
        except Http404 as exc:
            return JsonResponse({"error": str(exc) or "Not found."}, status=404)

    return wrapper
