"""Helpers shared by the page and API views."""

import logging
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse

from gallery import embedding
from gallery.search import queries
from gallery.search.queries import QueryImageError, QueryUnavailable

__all__ = [
    "K_CHOICES",
    "QueryImageError",
    "QueryUnavailable",
    "embed_query_file",
    "outside_results_url",
    "query_error_message",
    "query_error_status",
    "wants_json",
]

logger = logging.getLogger(__name__)

# The result counts the pages offer.
K_CHOICES = [6, 12, 24, 48, 100]


def embed_query_file(upload, *, gallery=None):
    """Return (QueryVector, the file's bytes) of an outside picture. Raise QueryImageError with a readable reason.

    Embedded in the version `gallery` serves (the previous one during a switch of backbone).
    """
    if upload.size > settings.IMAGESEARCH_MAX_UPLOAD_BYTES:
        raise QueryImageError(f"The file is too large (limit {settings.IMAGESEARCH_MAX_UPLOAD_BYTES // 1048576} MB).")
    data = upload.read()
    version = embedding.served_version(gallery) if gallery is not None else None
    return queries.outside_vector(data, version=version), data


# What anyone but staff reads when search with a picture cannot run: the technical reason (a
# weights file's path and errno, a worker's name) is for staff and the logs only.
UNAVAILABLE_FOR_PEOPLE = (
    "Search with a picture is being set up on this server and cannot run right now. Try again later."
)


def query_error_message(exc, user):
    """The message of a QueryImageError for `user`: a bad picture's reason to all, an outage's detail to staff only."""
    if isinstance(exc, QueryUnavailable) and not getattr(user, "is_staff", False):
        logger.warning("%s", exc)
        return UNAVAILABLE_FOR_PEOPLE
    return str(exc)


def query_error_status(exc):
    """503 when search with a picture cannot run now (no query worker, no weights), 400 for a bad picture."""
    return 503 if isinstance(exc, QueryUnavailable) else 400


def wants_json(request):
    return "application/json" in request.headers.get("Accept", "")


def outside_results_url(gallery, query, *, k=None, max_distance=None, band=None, page=None):
    """Return the signed GET URL (path and query string) of a stored outside query's results."""
    given = (("k", k), ("max_distance", max_distance), ("band", band), ("page", page))
    params = {name: value for name, value in given if value is not None}
    path = reverse("gallery_search_results", args=[gallery.slug, queries.token_for(query)])
    return f"{path}?{urlencode(params)}" if params else path
