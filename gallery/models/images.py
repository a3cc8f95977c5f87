import re
import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse

from gallery import access, vectors
from gallery.models.galleries import Gallery
from gallery.models.moderation import ModerationState

# " (SomeError: ...)" or " (some.module.Error: ...)" inside an embedding error: a library's words.
_EXCEPTION_DETAIL = re.compile(r"\s*\((?:[\w.]+(?:Error|Exception|Warning)|[\w.]+\.\w+): [^)]*\)")


class EmbeddingState(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


def image_upload_to(instance, filename):
    # The stored name never contains what the user typed: no traversal, no odd bytes.
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    return f"images/{instance.gallery_id}/{uuid.uuid4().hex}.{ext}"


def thumbnail_upload_to(instance, filename):
    return f"thumbs/{instance.gallery_id}/{uuid.uuid4().hex}.jpg"


class ImageQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Images `user` may see (gallery.access states the rule)."""
        q = access.images_q(user)
        return self if q is None else self.filter(q)

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
    # float32 little-endian unit vector of the backbone's width (gallery.vectors).
    embedding = models.BinaryField(null=True, blank=True, editable=False)
    embedding_version = models.CharField(max_length=120, blank=True, db_index=True)
    embedded_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # While the site switches backbone (IMAGESEARCH_BACKBONE or its weights changed),
    # the new version's vector is built here beside the one search serves; the switch
    # moves it into `embedding` when the gallery's coverage is complete.
    next_embedding = models.BinaryField(null=True, blank=True, editable=False)
    next_embedding_version = models.CharField(max_length=120, blank=True, db_index=True)
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
    # Perceptual hashes of the picture and of its mirror image (gallery.embedding.imaging):
    # with the embedding, what tells a near-duplicate apart (gallery.search.bands).
    phash = models.BigIntegerField(null=True, blank=True, editable=False)
    phash_mirror = models.BigIntegerField(null=True, blank=True, editable=False)

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

    @property
    def failure_reason(self):
        """Why embedding failed, for the owner: the message without the library's exception detail.

        The pipeline writes e.g. "The image could not be decoded (OSError: broken data stream ...)."; the
        part in brackets names Pillow's exception and is for staff (who see embedding_error whole).
        """
        reason = _EXCEPTION_DETAIL.sub("", self.embedding_error).strip()
        return reason or "It could not be read as a picture."

    def is_visible_to(self, user):
        """ImageQuerySet.visible_to for this one row (its gallery loaded): may `user` see it?"""
        return access.can_see(self, user)

    @property
    def vector(self):
        """Return the embedding as a (D,) float32 array, or None."""
        return None if self.embedding is None else vectors.unpack(self.embedding)


class ModerationQueueItem(Image):
    """The pending images, as the admin's moderation queue (a proxy: no table).

    It lives beside Image rather than in moderation.py: a proxy needs its base
    class, and Image's fields need ModerationState.
    """

    class Meta:
        proxy = True
        ordering = ["created_at", "id"]
        verbose_name = "moderation queue item"
        verbose_name_plural = "moderation queue"
