from django.conf import settings
from django.db import models
from django.utils import timezone


class ModerationState(models.TextChoices):
    PENDING = "pending", "Pending review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class ModerationEvent(models.Model):
    """Audit record of one moderation decision."""

    image = models.ForeignKey("gallery.Image", on_delete=models.CASCADE, related_name="moderation_events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    from_state = models.CharField(max_length=10, choices=ModerationState.choices)
    to_state = models.CharField(max_length=10, choices=ModerationState.choices)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
