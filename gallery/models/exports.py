"""Exports a gallery's owner asked for: built by a worker, downloaded by the owner only."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class Export(models.Model):
    """One export: what was asked (kind, format, params), how it went, and the file it made."""

    class Kind(models.TextChoices):
        EMBEDDINGS = "embeddings", "Embeddings (npy + ids CSV)"
        INDEX = "index", "Index snapshot"
        RESULTS = "results", "Result list"

    class Format(models.TextChoices):
        ZIP = "zip", "ZIP"
        CSV = "csv", "CSV"
        JSON = "json", "JSON"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    gallery = models.ForeignKey("gallery.Gallery", on_delete=models.CASCADE, related_name="exports")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    format = models.CharField(max_length=6, choices=Format.choices)
    # What a result list was the result of (the query, as the results page names it).
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    embedding_version = models.CharField(max_length=120, blank=True)
    row_count = models.PositiveIntegerField(default=0)
    file = models.CharField(max_length=255, blank=True)  # storage name of the finished file
    size_bytes = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.gallery} {self.kind} export ({self.format})"
