"""Who may see and change what: the one statement of the visibility rule.

Staff and a gallery's owner see every image of it, whatever its moderation
state. Everyone else sees only public galleries, and in them the images that
public_image_states() names: approved ones, and under post-moderation pending
ones that were not auto-flagged. The rule is rendered three ways from that one
list: a Q for querysets, a check of one loaded row, and an SQL predicate for the
hot-path reads (gallery.search.reads). tests/test_visibility_rule.py holds the
three equal for every persona, moderation mode, state and flag.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from django.conf import settings
from django.db.models import Q, QuerySet

from gallery.models.galleries import Gallery, Visibility
from gallery.models.moderation import ModerationState

if TYPE_CHECKING:
    from gallery.models.images import Image


class Viewer(Protocol):
    """Who is asking: a user, or AnonymousUser (what request.user holds)."""

    @property
    def is_authenticated(self) -> bool: ...

    @property
    def is_staff(self) -> bool: ...

    @property
    def pk(self) -> object: ...


def public_image_states() -> list[tuple[ModerationState, bool]]:
    """Return [(moderation state, must be unflagged)]: when a stranger sees an image of a public gallery."""
    states = [(ModerationState.APPROVED, False)]
    if settings.IMAGESEARCH_MODERATION == "post":
        # An auto-flagged upload waits for a moderator even under post-moderation.
        states.append((ModerationState.PENDING, True))
    return states


def sees_every_image(user: Viewer, gallery: Gallery) -> bool:
    """Staff and the owner see every image of the gallery, whatever its moderation state."""
    return user.is_authenticated and (user.is_staff or gallery.owner_id == user.pk)


def can_edit(user: Viewer, gallery: Gallery) -> bool:
    """Only the owner changes a gallery (staff act through the admin)."""
    return user.is_authenticated and gallery.owner_id == user.pk


def galleries_q(user: Viewer) -> Q | None:
    """A Q of the galleries `user` may open, or None for all of them (staff)."""
    if user.is_authenticated and user.is_staff:
        return None
    q = Q(visibility=Visibility.PUBLIC)
    if user.is_authenticated:
        q |= Q(owner=user)
    return q


def public_images_q(prefix: str = "") -> Q:
    """A Q of the images a stranger sees in a public gallery (`prefix` reaches the image from another model)."""
    q = Q()
    for state, unflagged in public_image_states():
        shown = Q(**{f"{prefix}moderation_state": state})
        if unflagged:
            shown &= Q(**{f"{prefix}flagged": False})
        q |= shown
    return q


def images_q(user: Viewer) -> Q | None:
    """A Q of the images `user` may see, or None for all of them (staff)."""
    if user.is_authenticated and user.is_staff:
        return None
    public = Q(gallery__visibility=Visibility.PUBLIC) & public_images_q()
    if user.is_authenticated:
        return public | Q(gallery__owner=user)
    return public


def can_see(image: Image, user: Viewer) -> bool:
    """images_q() for one row whose gallery is loaded: may `user` see `image`?"""
    gallery = image.gallery
    if sees_every_image(user, gallery):
        return True
    if gallery.visibility != Visibility.PUBLIC:
        return False
    return any(
        image.moderation_state == state and not (unflagged and image.flagged)
        for state, unflagged in public_image_states()
    )


def public_images_sql(quote: Callable[[str], str]) -> tuple[str, list[str]]:
    """public_images_q() as an SQL predicate over the image table's columns, with its parameters.

    `quote` quotes a column name (connection.ops.quote_name).
    """
    parts: list[str] = []
    params: list[str] = []
    for state, unflagged in public_image_states():
        parts.append(
            f"({quote('moderation_state')} = %s AND NOT {quote('flagged')})"
            if unflagged
            else f"{quote('moderation_state')} = %s"
        )
        params.append(state)
    return f"({' OR '.join(parts)})", params


def visible_galleries(user: Viewer) -> QuerySet[Gallery]:
    """The galleries `user` may open."""
    q = galleries_q(user)
    return Gallery.objects.all() if q is None else Gallery.objects.filter(q)
