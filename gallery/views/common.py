"""Helpers shared by the page and API views."""

from django.conf import settings

from gallery import embedding
from gallery.embedding import imaging

# The result counts the pages offer.
K_CHOICES = [6, 12, 24, 48, 100]


class QueryImageError(Exception):
    """The query image cannot be searched with; the message is for people."""


def embed_query_file(upload):
    """Decode and embed an outside query image. Raise QueryImageError with a readable reason."""
    if upload.size > settings.IMAGESEARCH_MAX_UPLOAD_BYTES:
        raise QueryImageError(f"The file is too large (limit {settings.IMAGESEARCH_MAX_UPLOAD_BYTES // 1048576} MB).")
    data = upload.read()
    try:
        imaging.inspect(data, settings.IMAGESEARCH_MAX_PIXELS)
        arr = imaging.model_input(data, embedding.input_size())  # (S, S, 3)
    except imaging.InvalidImage as exc:
        raise QueryImageError(str(exc)) from None
    try:
        return embedding.embed_batch([arr])[0]  # (D,)
    except embedding.WeightsUnavailable as exc:
        raise QueryImageError(f"Search is unavailable: {exc}") from None


def wants_json(request):
    return "application/json" in request.headers.get("Accept", "")
