"""Every model of the app, re-exported: Django and callers find them as gallery.models.X."""

from gallery.models.builds import GroupingRun, IndexBuild, MapBuild
from gallery.models.exports import Export
from gallery.models.galleries import Gallery, GalleryQuerySet, Visibility
from gallery.models.groups import DuplicateDecision, DuplicateGroup, DuplicateGroupMember
from gallery.models.images import (
    EmbeddingState,
    Image,
    ImageQuerySet,
    ModerationQueueItem,
    image_upload_to,
    thumbnail_upload_to,
)
from gallery.models.moderation import ModerationEvent, ModerationState
from gallery.models.notices import SystemNotice
from gallery.models.probes import CopyProbe
from gallery.models.queries import OutsideQuery
from gallery.models.sessions import Session
from gallery.models.trash import TrashedImage

__all__ = [
    "CopyProbe",
    "DuplicateDecision",
    "DuplicateGroup",
    "DuplicateGroupMember",
    "EmbeddingState",
    "Export",
    "Gallery",
    "GalleryQuerySet",
    "GroupingRun",
    "Image",
    "ImageQuerySet",
    "IndexBuild",
    "MapBuild",
    "ModerationEvent",
    "ModerationQueueItem",
    "ModerationState",
    "OutsideQuery",
    "Session",
    "SystemNotice",
    "TrashedImage",
    "Visibility",
    "image_upload_to",
    "thumbnail_upload_to",
]
