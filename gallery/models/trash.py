"""Images in a gallery's trash: removed from every page and search, restorable until purged."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class TrashedImage(models.Model):
    """What an Image row held when it was moved to the trash (gallery.services.trash).

    The Image row itself is deleted, so trashed pictures leave search, pages,
    counts and the next index build through the paths every deletion takes;
    its files stay in storage until the trash is purged. Restoring writes a
    new Image row (a new id) from this copy, its embedding included.
    """

    gallery = models.ForeignKey("gallery.Gallery", on_delete=models.CASCADE, related_name="trash")
    original_id = models.PositiveBigIntegerField()  # the Image's id while it lived
    file = models.CharField(max_length=255)
    thumbnail = models.CharField(max_length=255, blank=True)
    original_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    byte_size = models.PositiveBigIntegerField()
    content_type = models.CharField(max_length=50)
    uploader = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    uploaded_at = models.DateTimeField()
    moderation_state = models.CharField(max_length=10)
    moderation_note = models.TextField(blank=True)
    embedding = models.BinaryField(null=True, editable=False)
    embedding_version = models.CharField(max_length=120, blank=True)
    phash = models.BigIntegerField(null=True)
    phash_mirror = models.BigIntegerField(null=True)
    trashed_at = models.DateTimeField(default=timezone.now, db_index=True)
    trashed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=200, blank=True)  # e.g. "duplicate of IMG_0042.jpg"

    class Meta:
        ordering = ["-trashed_at", "-id"]

    def __str__(self):
        return f"{self.original_name} (trash)"
