"""Writes: everything that changes galleries and images, or queues work.

Functions are keyword-only and named <entity>_<action>. Work for the workers is
queued through gallery.jobs on commit, so a worker never sees a row that was
rolled back.
"""

from gallery.services.duplicates import (
    ACTIONS,
    Compared,
    Comparison,
    HashLookup,
    LookAlike,
    ResolveError,
    files_compare,
    gallery_find_duplicates,
    group_resolve,
    groups_resolve_all,
    keeper_key,
    upload_keep,
    upload_skip,
)
from gallery.services.galleries import (
    delete_files,
    gallery_create,
    gallery_delete,
    gallery_rebuild_request,
    gallery_update,
)
from gallery.services.health import Repair, gallery_repair
from gallery.services.indexing import (
    galleries_ready_to_switch,
    gallery_rebuild_index,
    index_is_stale,
    switch_coverage,
    switch_ready,
)
from gallery.services.maps import gallery_build_map
from gallery.services.moderation import image_moderate, images_autoflag, images_moderate
from gallery.services.probes import gallery_probe_copies, probes_wanted
from gallery.services.trash import (
    Restored,
    images_trash,
    trash_expires_at,
    trash_purge,
    trash_purge_expired,
    trash_restore,
)
from gallery.services.uploads import (
    UploadError,
    UploadResult,
    clean_filename,
    image_create,
    image_delete,
    images_delete,
    images_embed,
    images_queue_embedding,
    images_reconcile,
    images_reembed,
    images_retry,
    images_upload,
)

__all__ = [
    "ACTIONS",
    "Repair",
    "gallery_repair",
    "Compared",
    "Comparison",
    "HashLookup",
    "LookAlike",
    "ResolveError",
    "Restored",
    "files_compare",
    "gallery_build_map",
    "gallery_find_duplicates",
    "group_resolve",
    "groups_resolve_all",
    "images_trash",
    "keeper_key",
    "trash_expires_at",
    "trash_purge",
    "trash_purge_expired",
    "trash_restore",
    "upload_keep",
    "upload_skip",
    "UploadError",
    "UploadResult",
    "clean_filename",
    "delete_files",
    "gallery_create",
    "gallery_delete",
    "galleries_ready_to_switch",
    "gallery_rebuild_index",
    "gallery_rebuild_request",
    "gallery_probe_copies",
    "probes_wanted",
    "gallery_update",
    "image_create",
    "image_delete",
    "image_moderate",
    "images_autoflag",
    "images_delete",
    "images_embed",
    "images_moderate",
    "images_queue_embedding",
    "images_reconcile",
    "images_reembed",
    "images_retry",
    "images_upload",
    "index_is_stale",
    "switch_coverage",
    "switch_ready",
]
