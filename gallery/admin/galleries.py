"""The staff's gallery tools: counts by state, index status and rebuilds, builds and notices."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, Q
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from gallery import selectors, services
from gallery.models import EmbeddingState, GroupingRun, IndexBuild, ModerationState


def _count_column(name, description):
    return admin.display(description=description, ordering=name)(lambda self, obj: getattr(obj, name))


class GalleryAdmin(admin.ModelAdmin):
    class Media:
        css = {"all": ["gallery/admin.css"]}

    change_form_template = "admin/gallery/gallery_change_form.html"
    list_display = (
        "title",
        "owner",
        "visibility",
        "n_images",
        "n_pending",
        "n_approved",
        "n_rejected",
        "n_flagged",
        "n_waiting",
        "n_ready",
        "n_failed",
        "index_version",
        "index_items",
        "index_built_at",
        "index_search",
        "index_stale",
    )
    list_filter = ("visibility", "index_dirty")
    search_fields = ("title", "slug", "owner__username")
    list_select_related = ("owner",)
    prepopulated_fields = {"slug": ("title",)}
    actions = ("rebuild_now", "delete_selected")
    readonly_fields = ("image_counts", "index_status", "created_at", "updated_at")
    fields = (
        "title",
        "slug",
        "owner",
        "visibility",
        "description",
        "image_counts",
        "index_status",
        "created_at",
        "updated_at",
    )

    def get_queryset(self, request):
        images = "images__"
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_images=Count("images"),
                n_pending=Count("images", filter=Q(**{images + "moderation_state": ModerationState.PENDING})),
                n_approved=Count("images", filter=Q(**{images + "moderation_state": ModerationState.APPROVED})),
                n_rejected=Count("images", filter=Q(**{images + "moderation_state": ModerationState.REJECTED})),
                n_flagged=Count(
                    "images",
                    filter=Q(**{images + "flagged": True, images + "moderation_state": ModerationState.PENDING}),
                ),
                n_waiting=Count(
                    "images",
                    filter=Q(**{images + "embedding_state__in": [EmbeddingState.PENDING, EmbeddingState.PROCESSING]}),
                ),
                n_ready=Count("images", filter=Q(**{images + "embedding_state": EmbeddingState.READY})),
                n_failed=Count("images", filter=Q(**{images + "embedding_state": EmbeddingState.FAILED})),
                # The build search uses, which the gallery row names.
                index_version=F("current_index__version"),
                index_items=F("current_index__item_count"),
                index_built_at=F("current_index__built_at"),
                # How it is searched, from the same join: no query per row.
                index_exact=F("current_index__exact"),
                index_search_k=F("current_index__search_k"),
                index_recall=F("current_index__recall"),
            )
        )

    # One list column per annotated count (the annotations come from get_queryset).
    n_images = _count_column("n_images", "Images")
    n_pending = _count_column("n_pending", "Pending review")
    n_approved = _count_column("n_approved", "Approved")
    n_rejected = _count_column("n_rejected", "Rejected")
    n_flagged = _count_column("n_flagged", "Flagged")
    n_waiting = _count_column("n_waiting", "Embedding")
    n_ready = _count_column("n_ready", "Embedded")
    n_failed = _count_column("n_failed", "Failed")

    @admin.display(description="Index version", ordering="index_version")
    def index_version(self, obj):
        return f"v{obj.index_version}" if obj.index_version else "not built"

    @admin.display(description="Indexed items", ordering="index_items")
    def index_items(self, obj):
        return obj.index_items if obj.index_version else 0

    @admin.display(description="Built", ordering="index_built_at")
    def index_built_at(self, obj):
        return obj.index_built_at or "—"

    @admin.display(description="Search (recall@10)", ordering="index_recall")
    def index_search(self, obj):
        if not obj.index_version:
            return "—"
        mode = "exact" if obj.index_exact else ("forest" if obj.index_search_k else "forest, fixed rule")
        return mode if obj.index_recall is None else f"{mode}, {obj.index_recall:.3f}"

    @admin.display(description="Index stale", boolean=True, ordering="index_dirty")
    def index_stale(self, obj):
        return obj.index_dirty

    @admin.display(description="Images by state")
    def image_counts(self, obj):
        if getattr(obj, "n_images", None) is None:
            return "—"  # the add page: nothing to count
        row = obj  # get_object() used the annotated get_queryset()
        return format_html(
            "{} images: {} pending review ({} auto-flagged), {} approved, {} rejected; "
            "{} being embedded, {} embedded, {} failed.",
            row.n_images,
            row.n_pending,
            row.n_flagged,
            row.n_approved,
            row.n_rejected,
            row.n_waiting,
            row.n_ready,
            row.n_failed,
        )

    @admin.display(description="Index")
    def index_status(self, obj):
        if obj.pk is None:
            return "—"
        full = selectors.gallery_status(gallery=obj, detailed=True)  # the admin is staff's
        status = full["index"]
        if status["version"] is None:
            text = "Not built yet"
        else:
            text = f"Version {status['version']}, {status['items']} items, built {status['built_at']}"
        text += " — stale: a rebuild is due." if status["stale"] else " — up to date."
        text = f"{text} {status['search']}." if status["search"] else text
        switch = full.get("switch")
        if switch:  # search serves the previous model until the flip
            text += f" {switch['label']} (from {switch['from']}; search serves it until then)."
        return text

    def get_urls(self):
        return [
            path(
                "<path:object_id>/rebuild-index/",
                self.admin_site.admin_view(self.rebuild_view),
                name="gallery_gallery_rebuild_index",
            ),
        ] + super().get_urls()

    def rebuild_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        gallery = self.get_object(request, object_id)
        if gallery is None:
            raise Http404("No such gallery.")
        if not self.has_change_permission(request, gallery):
            raise PermissionDenied
        services.gallery_rebuild_request(gallery_id=gallery.pk)
        self.message_user(request, f"Index rebuild of “{gallery.title}” queued.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:gallery_gallery_change", args=[gallery.pk]))

    @admin.action(description="Rebuild index now", permissions=["change"])
    def rebuild_now(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        for gallery_id in ids:
            services.gallery_rebuild_request(gallery_id=gallery_id)
        self.message_user(request, f"Index rebuild queued for {len(ids)} gallery(ies).", messages.SUCCESS)

    def delete_model(self, request, obj):
        services.gallery_delete(gallery=obj)

    def delete_queryset(self, request, queryset):
        for gallery in queryset:
            services.gallery_delete(gallery=gallery)


# What the build's calibration chose and measured (gallery.search.calibration), shown together.
CALIBRATION_FIELDS = (
    "mode",
    "recall_measured",
    "calibrated_in",
    "exact",
    "search_k",
    "pool",
    "recall",
    "recall_queries",
)
BAND_FIELDS = ("bands_fitted", "bands")


class IndexBuildAdmin(admin.ModelAdmin):
    list_display = (
        "gallery",
        "version",
        "status",
        "item_count",
        "n_trees",
        "mode",
        "recall_measured",
        "calibrated_in",
        "built_at",
        "duration_seconds",
    )
    list_filter = ("status", "exact", "gallery")
    list_select_related = ("gallery",)
    readonly_fields = [
        "mode",
        "recall_measured",
        "calibrated_in",
        "bands_fitted",
        "duplicate_groups",
        *(f.name for f in IndexBuild._meta.fields),
    ]

    def get_fieldsets(self, request, obj=None):
        # Every other field as before, including any added later.
        rest = [f.name for f in IndexBuild._meta.fields if f.name not in CALIBRATION_FIELDS + BAND_FIELDS]
        return [
            (None, {"fields": rest}),
            ("Calibration", {"fields": CALIBRATION_FIELDS}),
            ("Similarity bands", {"fields": BAND_FIELDS}),
            ("Near-duplicate groups", {"fields": ("duplicate_groups",)}),
        ]

    @admin.display(description="Groups")
    def duplicate_groups(self, obj):
        run = GroupingRun.objects.filter(build=obj).first()
        if run is None:
            return "not grouped (yet)" if obj.status == IndexBuild.Status.READY else "—"
        if run.status == GroupingRun.Status.FAILED:
            return f"failed: {run.error}"
        return (
            f"{run.group_count} group(s) of {run.grouped_images} image(s) from {run.pair_count} pair(s), "
            f"{run.item_count} images compared in {run.duration_seconds:.1f} s"
        )

    @admin.display(description="Search", ordering="exact")
    def mode(self, obj):
        if obj.status == IndexBuild.Status.FAILED:
            return "—"
        if obj.exact:
            return "exact"
        if not obj.search_k:
            return f"forest: fixed rule ({obj.n_trees} trees; built before calibration)"
        return f"forest: pool {obj.pool}, search_k {obj.search_k}"

    @admin.display(description="Recall@10", ordering="recall")
    def recall_measured(self, obj):
        if obj.recall is None:
            return "not measured"
        return f"{obj.recall:.3f} on {obj.recall_queries} queries"

    @admin.display(description="Calibrated in", ordering="calibration_seconds")
    def calibrated_in(self, obj):
        return f"{obj.calibration_seconds:.1f} s" if obj.recall_queries else "—"

    @admin.display(description="Bands")
    def bands_fitted(self, obj):
        fit = obj.bands or {}
        if not fit:
            return "none (built before bands)"
        if fit.get("white") is None:
            near = "near-duplicates by perceptual hash alone"
        else:
            near = (
                f"near-duplicates by hash or whitened distance <= {fit['white']:.3f} "
                f"(fitted to {fit['probes']} generated copies, which it catches {fit['probe_recall']:.0%} of)"
            )
        return f"{near}; similar <= {fit['similar']:.5f}, related <= {fit['related']:.5f} (from {fit['pairs']} pairs)"

    def has_add_permission(self, request):
        return False


class SystemNoticeAdmin(admin.ModelAdmin):
    list_display = ("key", "message", "updated_at")
