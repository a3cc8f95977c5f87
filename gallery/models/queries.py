import uuid

from django.conf import settings
from django.db import models


class OutsideQuery(models.Model):
    """A search with a picture from outside the gallery, kept so its results have a GET URL.

    The picture itself is not kept: only its vector (to search again) and a
    small thumbnail (to show what was searched). Rows expire after
    IMAGESEARCH_QUERY_TTL_SECONDS and are purged by the periodic housekeeping.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    gallery = models.ForeignKey("gallery.Gallery", on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    original_name = models.CharField(max_length=255, blank=True)
    embedding_version = models.CharField(max_length=120)
    vector = models.BinaryField()  # float32 little-endian unit vector (gallery.vectors)
    thumbnail = models.BinaryField(blank=True)  # small JPEG of the query picture
    phash = models.BigIntegerField(null=True, blank=True)  # perceptual hashes, as Image.phash
    phash_mirror = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self):
        return f"{self.original_name or 'query'} in {self.gallery_id}"
