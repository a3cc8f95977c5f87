"""Stored outside queries: the rows behind the GET URLs of outside searches' results."""

import logging
from datetime import datetime, timedelta
from typing import cast

from django.conf import settings
from django.utils import timezone

from gallery import access, vectors
from gallery.embedding import imaging
from gallery.models import Gallery, OutsideQuery
from gallery.search.queries import QueryVector

logger = logging.getLogger(__name__)

THUMB_SIZE = 160  # the query card on the results page


def outside_query_create(
    *, gallery: Gallery, user: access.Viewer, name: str, query: QueryVector, picture: bytes
) -> OutsideQuery:
    """Store an outside search's vector and a small thumbnail of its picture (never the picture itself)."""
    try:
        thumbnail = imaging.thumbnail_jpeg(picture, THUMB_SIZE)
    except Exception:  # the picture was decoded once already; a missing preview is not worth failing the search
        logger.warning("no thumbnail for outside query %r", name, exc_info=True)
        thumbnail = b""
    return OutsideQuery.objects.create(
        gallery=gallery,
        created_by_id=cast(int, user.pk) if user.is_authenticated else None,
        original_name=name[:255],
        embedding_version=query.version,
        vector=vectors.pack(query.vector),
        thumbnail=thumbnail,
        phash=query.hashes[0] if query.hashes else None,
        phash_mirror=query.hashes[1] if query.hashes else None,
    )


def outside_query_expires_at(query: OutsideQuery) -> datetime:
    """When the stored query's link stops working."""
    return query.created_at + timedelta(seconds=settings.IMAGESEARCH_QUERY_TTL_SECONDS)


def outside_queries_purge(*, now: datetime | None = None) -> int:
    """Delete stored queries whose links have expired. Return how many."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.IMAGESEARCH_QUERY_TTL_SECONDS)
    deleted, _ = OutsideQuery.objects.filter(created_at__lt=cutoff).delete()
    return deleted
