from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone


class Visibility(models.TextChoices):
    PRIVATE = "private", "Private"
    PUBLIC = "public", "Public"


class GalleryQuerySet(models.QuerySet):
    def mark_index_stale(self):
        """Note that these galleries' indexes are out of date; beat rebuilds each once.

        Conditional, so a gallery already waiting keeps the time it first became stale.
        """
        return self.filter(index_dirty=False).update(index_dirty=True, index_dirty_since=timezone.now())


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

    objects = GalleryQuerySet.as_manager()

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

    def current_build(self):
        """The ready IndexBuild search uses (a rebuild supersedes the previous one), or None.

        Through current_index when this row names one (no query once the build
        is cached); otherwise asked of the database, so an instance loaded
        before the gallery's first build still finds it.
        """
        from gallery.models.builds import IndexBuild

        if self.current_index_id is not None:
            return IndexBuild.cached(self.current_index_id, gallery_id=self.pk)
        return self.index_builds.filter(status=IndexBuild.Status.READY).order_by("-version").first()
