"""Writes to galleries: create, update, delete, and asking for an index rebuild."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from gallery import jobs
from gallery.models import Gallery, Visibility
from gallery.search import cache

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

SLUG_ATTEMPTS = 5


def _unique_slug(title: str, exclude_pk: int | None = None) -> str:
    base = slugify(title)[:60] or "gallery"
    slug, n = base, 2
    # pk=None is a valid lookup (IS NULL, so nothing is left out), which django-stubs does not allow.
    while Gallery.objects.filter(slug=slug).exclude(pk=exclude_pk).exists():  # type: ignore[misc]
        slug = f"{base}-{n}"
        n += 1
    return slug


def gallery_create(*, owner: User, title: str, description: str = "", visibility: str = Visibility.PRIVATE) -> Gallery:
    """Create a gallery with a slug made from its title (unique, even when two are created at once)."""
    attempts = SLUG_ATTEMPTS
    while True:
        try:
            with transaction.atomic():
                return Gallery.objects.create(
                    owner=owner, title=title, slug=_unique_slug(title), description=description, visibility=visibility
                )
        except IntegrityError:  # another request took the same slug between the check and the insert
            attempts -= 1
            if not attempts:
                raise


def gallery_update(*, gallery: Gallery, title: str, description: str, visibility: str) -> Gallery:
    gallery.title = title
    gallery.description = description
    gallery.visibility = visibility
    gallery.save(update_fields=["title", "description", "visibility", "updated_at"])
    return gallery


def gallery_delete(*, gallery: Gallery) -> None:
    """Delete a gallery, its images, their stored files and its index files (after the commit)."""
    names = [n for pair in gallery.images.values_list("file", "thumbnail") for n in pair if n]
    names += [n for pair in gallery.trash.values_list("file", "thumbnail") for n in pair if n]
    names += [n for n in gallery.exports.values_list("file", flat=True) if n]
    gallery_id = gallery.pk
    gallery.delete()
    transaction.on_commit(lambda: delete_files(names))
    transaction.on_commit(lambda: cache.remove_gallery(gallery_id))


def gallery_rebuild_request(*, gallery_id: int) -> None:
    """Ask for a rebuild of the gallery's index now (e.g. from the admin).

    The gallery is marked stale first, so if the broker cannot be reached the
    periodic task still rebuilds it.
    """
    Gallery.objects.filter(pk=gallery_id).update(index_dirty=True, index_dirty_since=timezone.now())
    jobs.queue_rebuild(gallery_id)


def delete_files(names: Iterable[str]) -> None:
    """Delete stored files by name; a file that cannot be deleted is logged, not raised."""
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("could not delete %s from storage", name, exc_info=True)
