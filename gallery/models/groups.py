"""Near-duplicate groups of a gallery, and what its owner decided about them."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class DuplicateGroup(models.Model):
    """Images of one gallery that are near-duplicates of each other (one grouping run's connected component)."""

    gallery = models.ForeignKey("gallery.Gallery", on_delete=models.CASCADE, related_name="duplicate_groups")
    run = models.ForeignKey("gallery.GroupingRun", on_delete=models.CASCADE, related_name="groups")
    # Largest picture, then largest file, then oldest (gallery.services.duplicates.suggested_keeper).
    keeper = models.ForeignKey("gallery.Image", null=True, on_delete=models.SET_NULL, related_name="+")
    size = models.PositiveIntegerField()
    max_distance = models.FloatField(default=0)  # farthest member from the keeper (cosine)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-size", "id"]

    def __str__(self):
        return f"group {self.pk} of {self.size}"


class DuplicateGroupMember(models.Model):
    group = models.ForeignKey(DuplicateGroup, on_delete=models.CASCADE, related_name="members")
    image = models.ForeignKey("gallery.Image", on_delete=models.CASCADE, related_name="+")
    distance = models.FloatField(default=0)  # cosine distance to the group's suggested keeper
    hash_bits = models.PositiveSmallIntegerField(default=64)  # perceptual-hash distance to the keeper (64: none)

    class Meta:
        ordering = ["distance", "image_id"]
        constraints = [models.UniqueConstraint(fields=["group", "image"], name="unique_group_member")]


class DuplicateDecision(models.Model):
    """An owner's word on a pair of images: never propose them as duplicates again.

    Stored per pair (low pk first), so a new image that looks like a group
    already decided on still forms a group with it.
    """

    class Kind(models.TextChoices):
        KEEP_ALL = "keep_all", "Keep all"
        NOT_DUPLICATES = "not_duplicates", "Not duplicates"
        KEEP = "keep", "Kept at upload"

    gallery = models.ForeignKey("gallery.Gallery", on_delete=models.CASCADE, related_name="+")
    low = models.ForeignKey("gallery.Image", on_delete=models.CASCADE, related_name="+")
    high = models.ForeignKey("gallery.Image", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["low", "high"], name="unique_duplicate_decision"),
            models.CheckConstraint(condition=models.Q(low__lt=models.F("high")), name="duplicate_decision_ordered"),
        ]
        indexes = [models.Index(fields=["gallery"], name="duplicatedecision_gallery")]
