import threading
from collections import OrderedDict

from django.db import models
from django.utils import timezone


class IndexBuild(models.Model):
    """One Annoy index build of a gallery."""

    class Status(models.TextChoices):
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        SUPERSEDED = "superseded", "Superseded"

    gallery = models.ForeignKey("gallery.Gallery", on_delete=models.CASCADE, related_name="index_builds")
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
    # How queries use this version, chosen at build time from a sample of the
    # gallery's own vectors (gallery.search.calibration). search_k 0 means a
    # version built before calibration: the fixed rule of ann.search_k_for().
    exact = models.BooleanField(default=False)  # scanned exactly: as fast as the forest at this size
    search_k = models.PositiveIntegerField(default=0)
    pool = models.PositiveIntegerField(default=0)  # candidates re-ranked exactly for 10 results
    recall = models.FloatField(null=True, blank=True)  # measured recall@10 against exact search
    recall_queries = models.PositiveIntegerField(default=0)
    calibration_seconds = models.FloatField(default=0)
    # Similarity bands fitted to the gallery's distances (gallery.search.bands).
    bands = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-built_at"]
        constraints = [models.UniqueConstraint(fields=["gallery", "version"], name="unique_build_version")]

    def __str__(self):
        return f"{self.gallery} v{self.version}"

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
_build_cache: "OrderedDict[int, IndexBuild]" = OrderedDict()  # oldest first
_build_cache_lock = threading.Lock()


class GroupingRun(models.Model):
    """The near-duplicate groups of one index build: derived from its files (gallery.analysis.duplicates)."""

    class Status(models.TextChoices):
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    gallery = models.ForeignKey("gallery.Gallery", on_delete=models.CASCADE, related_name="grouping_runs")
    build = models.OneToOneField(IndexBuild, on_delete=models.CASCADE, related_name="grouping")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.READY)
    item_count = models.PositiveIntegerField(default=0)  # items of the build looked at
    pair_count = models.PositiveIntegerField(default=0)  # near-duplicate pairs found (after remembered decisions)
    group_count = models.PositiveIntegerField(default=0)
    grouped_images = models.PositiveIntegerField(default=0)
    duration_seconds = models.FloatField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.build}: {self.group_count} group(s)"


class MapBuild(models.Model):
    """The 2-D map of one index build: every item's (x, y), laid out by a worker (gallery.analysis.layout).

    The coordinates live in a file beside the build's index files (float32 x, y
    and the image ids, in the build's item order); this row says how and when
    they were made.
    """

    class Status(models.TextChoices):
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    gallery = models.ForeignKey("gallery.Gallery", on_delete=models.CASCADE, related_name="map_builds")
    build = models.OneToOneField(IndexBuild, on_delete=models.CASCADE, related_name="map")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.READY)
    method = models.CharField(max_length=12, default="pca")  # pca, umap or tsne (IMAGESEARCH_MAP_METHOD)
    item_count = models.PositiveIntegerField(default=0)
    file = models.CharField(max_length=255, blank=True)  # storage name of the coordinates file
    size_bytes = models.PositiveBigIntegerField(default=0)
    duration_seconds = models.FloatField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.build}: map ({self.method})"
