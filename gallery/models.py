import threading
import uuid
from collections import OrderedDict

import numpy as np
from django.conf import settings
from django.contrib.sessions.base_session import AbstractBaseSession
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from gallery import index

EMBEDDING_DIM = 512


class Visibility(models.TextChoices):
    PRIVATE = "private", "Private"
    PUBLIC = "public", "Public"


class Gallery(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="galleries")
    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.PRIVATE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Set when the gallery's searchable set changed since the last index build;
    # the periodic task rebuilds each dirty gallery once, however many changes.
    index_dirty = models.BooleanField(default=False, db_index=True)
    index_dirty_since = models.DateTimeField(null=True, blank=True)
    # The ready build that search uses, set in the rebuild's transaction. Read
    # with the gallery row; builds are immutable, so each web process keeps the
    # few it uses (IndexBuild.cached) and a search needs no query for it.
    current_index = models.ForeignKey(
        "IndexBuild", null=True, blank=True, editable=False, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["title"]
        verbose_name_plural = "galleries"

    def __str__(self):
        return self.title

    def get_absolute_url(self):
        return reverse("gallery_detail", kwargs={"slug": self.slug})

    @property
    def is_public(self):
        return self.visibility == Visibility.PUBLIC

    def shows_every_image_to(self, user):
        """Staff and the owner see every image of the gallery, whatever its moderation state."""
        return user.is_authenticated and (user.is_staff or self.owner_id == user.pk)

    def current_build(self):
        """The ready IndexBuild search uses (a rebuild supersedes the previous one), or None.

        Through current_index when this row names one (no query once the build
        is cached); otherwise asked of the database, so an instance loaded
        before the gallery's first build still finds it.
        """
        if self.current_index_id is not None:
            return IndexBuild.cached(self.current_index_id, gallery_id=self.pk)
        return self.index_builds.filter(status=IndexBuild.Status.READY).order_by("-version").first()


class EmbeddingState(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class ModerationState(models.TextChoices):
    PENDING = "pending", "Pending review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


def image_upload_to(instance, filename):
    # The stored name never contains what the user typed: no traversal, no odd bytes.
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    return f"images/{instance.gallery_id}/{uuid.uuid4().hex}.{ext}"


def thumbnail_upload_to(instance, filename):
    return f"thumbs/{instance.gallery_id}/{uuid.uuid4().hex}.jpg"


class ImageQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Images `user` may see: staff see all; owners see their own galleries' images
        (rejected ones marked as such); everyone else sees approved images, and under
        post-moderation pending ones that were not auto-flagged, in galleries they may see.
        Image.is_visible_to() and sql.visible_candidates() state the same rule for one
        row and for one gallery; tests/test_visibility_rule.py holds them equal."""
        if user.is_authenticated and user.is_staff:
            return self
        gallery_ok = Q(gallery__visibility=Visibility.PUBLIC)
        if user.is_authenticated:
            gallery_ok |= Q(gallery__owner=user)
        public_ok = Q(moderation_state=ModerationState.APPROVED)
        if settings.IMAGESEARCH_MODERATION == "post":
            # An auto-flagged upload waits for a moderator even under post-moderation.
            public_ok |= Q(moderation_state=ModerationState.PENDING, flagged=False)
        if user.is_authenticated:
            return self.filter(gallery_ok).filter(public_ok | Q(gallery__owner=user))
        return self.filter(gallery_ok & public_ok)

    def searchable(self):
        """Images that may appear in a similarity result or an index: embedded and not rejected.
        Pre-moderated pending images are filtered per viewer by visible_to()."""
        return self.filter(embedding_state=EmbeddingState.READY).exclude(moderation_state=ModerationState.REJECTED)


class Image(models.Model):
    gallery = models.ForeignKey(Gallery, on_delete=models.CASCADE, related_name="images")
    file = models.FileField(upload_to=image_upload_to, max_length=255)
    thumbnail = models.FileField(upload_to=thumbnail_upload_to, max_length=255, blank=True)
    original_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64, db_index=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    byte_size = models.PositiveBigIntegerField()
    content_type = models.CharField(max_length=50)
    uploader = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    embedding_state = models.CharField(
        max_length=12, choices=EmbeddingState.choices, default=EmbeddingState.PENDING, db_index=True
    )
    embedding_error = models.TextField(blank=True)
    # float32 little-endian, EMBEDDING_DIM values, unit length (2 KiB a row).
    embedding = models.BinaryField(null=True, blank=True, editable=False)
    embedding_version = models.CharField(max_length=120, blank=True, db_index=True)
    embedded_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Claim bookkeeping for the worker: a conditional UPDATE sets both, so two
    # deliveries of the same task cannot both embed one image.
    claim_token = models.UUIDField(null=True, blank=True, db_index=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)

    moderation_state = models.CharField(
        max_length=10, choices=ModerationState.choices, default=ModerationState.PENDING, db_index=True
    )
    moderation_note = models.TextField(blank=True)
    moderated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    moderated_at = models.DateTimeField(null=True, blank=True)
    # Auto-flag: set when the image's vector lies within IMAGESEARCH_AUTOFLAG_DISTANCE
    # of a rejected image of the same gallery. A flagged pending image is held back
    # from strangers even under post-moderation, and leads the moderation queue.
    flagged = models.BooleanField(default=False, db_index=True)
    flag_reason = models.TextField(blank=True)
    flag_match = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    flag_distance = models.FloatField(null=True, blank=True)

    objects = ImageQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["gallery", "sha256"], name="unique_image_per_gallery"),
        ]
        indexes = [
            models.Index(fields=["gallery", "embedding_state"]),
            # Search reads "embedded since the last index build" of one gallery on every query.
            models.Index(fields=["gallery", "embedded_at"], name="image_gallery_embedded_at"),
        ]

    def __str__(self):
        return self.original_name

    def get_absolute_url(self):
        return reverse("image_detail", kwargs={"pk": self.pk})

    def is_visible_to(self, user):
        """ImageQuerySet.visible_to for this one row (its gallery loaded): may `user` see it?"""
        if self.gallery.shows_every_image_to(user):
            return True
        if self.gallery.visibility != Visibility.PUBLIC:
            return False
        if self.moderation_state == ModerationState.APPROVED:
            return True
        return (
            settings.IMAGESEARCH_MODERATION == "post"
            and self.moderation_state == ModerationState.PENDING
            and not self.flagged
        )

    @property
    def vector(self):
        """Return the embedding as a (512,) float32 array, or None."""
        if self.embedding is None:
            return None
        return np.frombuffer(bytes(self.embedding), dtype="<f4")

    @staticmethod
    def pack_vector(vec):
        return np.asarray(vec, dtype="<f4").reshape(EMBEDDING_DIM).tobytes()


class ModerationQueueItem(Image):
    """The pending images, as the admin's moderation queue (a proxy: no table)."""

    class Meta:
        proxy = True
        ordering = ["created_at", "id"]
        verbose_name = "moderation queue item"
        verbose_name_plural = "moderation queue"


class ModerationEvent(models.Model):
    """Audit record of one moderation decision."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="moderation_events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    from_state = models.CharField(max_length=10, choices=ModerationState.choices)
    to_state = models.CharField(max_length=10, choices=ModerationState.choices)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]


class IndexBuild(models.Model):
    """One Annoy index build of a gallery."""

    class Status(models.TextChoices):
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        SUPERSEDED = "superseded", "Superseded"

    gallery = models.ForeignKey(Gallery, on_delete=models.CASCADE, related_name="index_builds")
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.READY)
    embedding_version = models.CharField(max_length=120, blank=True)
    item_count = models.PositiveIntegerField(default=0)
    n_trees = models.PositiveIntegerField(default=0)
    checksum = models.CharField(max_length=64, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    # Every image embedded at or before this instant is in the index; later ones
    # are searched exactly until the next build.
    snapshot_at = models.DateTimeField()
    built_at = models.DateTimeField(default=timezone.now)
    duration_seconds = models.FloatField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-built_at"]
        constraints = [models.UniqueConstraint(fields=["gallery", "version"], name="unique_build_version")]

    def __str__(self):
        return f"{self.gallery} v{self.version}"

    @property
    def ref(self):
        """This build as gallery.index knows a published version."""
        return index.Ref(self.gallery_id, self.version, self.checksum, self.n_trees, self.item_count)

    @classmethod
    def cached(cls, pk, *, gallery_id):
        """Return the build with this pk from a small per-process cache, or None.

        What search reads of a build (version, checksum, trees, items, snapshot,
        embedding version) never changes once it is written; only `status` does,
        and callers reach a build through Gallery.current_index, which names the
        ready one. A build of another gallery under the same pk (a reused rowid
        on SQLite) is read again.
        """
        with _build_cache_lock:
            build = _build_cache.get(pk)
        if build is None or build.gallery_id != gallery_id:
            build = cls.objects.filter(pk=pk).first()
            if build is None:
                return None
            with _build_cache_lock:
                _build_cache[pk] = build
                while len(_build_cache) > BUILD_CACHE_SIZE:
                    _build_cache.popitem(last=False)
        return build

    @staticmethod
    def forget_cached():
        with _build_cache_lock:
            _build_cache.clear()


BUILD_CACHE_SIZE = 256
_build_cache = OrderedDict()  # IndexBuild pk -> IndexBuild (oldest first)
_build_cache_lock = threading.Lock()


class SystemNotice(models.Model):
    """A problem the workers report to people (e.g. the model weights cannot be loaded)."""

    key = models.CharField(max_length=50, unique=True)
    message = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return self.key


class Session(AbstractBaseSession):
    """A session that names its signed-in user, so one query reads both (gallery.auth).

    Django's own session row keeps the user only inside its signed data; this
    column is written from that data on every save, and deleting a user deletes
    their sessions.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+", editable=False
    )

    class Meta(AbstractBaseSession.Meta):
        db_table = "gallery_session"

    @classmethod
    def get_session_store_class(cls):
        from gallery.auth import SessionStore

        return SessionStore
