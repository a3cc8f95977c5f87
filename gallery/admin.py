from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db.models import Count, Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from gallery import selectors, services
from gallery.models import EmbeddingState, Gallery, Image, IndexBuild, ModerationEvent, ModerationState, SystemNotice


def _thumb(image, size=80):
    if not image.thumbnail:
        return "—"
    return format_html(
        '<img src="{}" alt="{}" style="max-width:{}px;max-height:{}px;border-radius:3px">',
        reverse("image_thumb", args=[image.pk]),
        image.original_name,
        size,
        size,
    )


class ModerationEventInline(admin.TabularInline):
    model = ModerationEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "actor", "from_state", "to_state", "reason")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class ImageActionForm(ActionForm):
    reason = forms.CharField(required=False, label="Reason (for reject)", max_length=500)


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    action_form = ImageActionForm
    list_display = ("thumb", "original_name", "gallery", "moderation_state", "embedding_state", "created_at")
    list_display_links = ("thumb", "original_name")
    list_filter = ("moderation_state", "embedding_state", "gallery", "gallery__owner", "created_at")
    search_fields = ("original_name", "gallery__title", "gallery__owner__username", "sha256")
    list_select_related = ("gallery",)
    ordering = ("created_at",)  # oldest first: the moderation queue order
    date_hierarchy = "created_at"
    actions = ("approve", "reject", "retry_embedding", "reembed")
    inlines = (ModerationEventInline,)
    readonly_fields = (
        "preview", "gallery", "original_name", "sha256", "width", "height", "byte_size", "content_type", "uploader",
        "created_at", "embedding_state", "embedding_error", "embedding_version", "embedded_at", "attempts",
        "moderation_state", "moderated_by", "moderated_at", "rejected_neighbours",
    )
    fields = readonly_fields[:1] + ("moderation_note",) + readonly_fields[1:]

    def has_add_permission(self, request):
        return False  # images arrive through uploads, which validate and embed them

    @admin.display(description="Image")
    def thumb(self, obj):
        return _thumb(obj)

    @admin.display(description="Preview")
    def preview(self, obj):
        return format_html(
            '<a href="{}"><img src="{}" alt="{}" style="max-width:480px;max-height:480px"></a>',
            reverse("image_file", args=[obj.pk]),
            reverse("image_file", args=[obj.pk]),
            obj.original_name,
        )

    @admin.display(description="Nearest rejected images")
    def rejected_neighbours(self, obj):
        near = selectors.rejected_neighbours(image=obj)
        if not near:
            return "None."
        return format_html_join(
            "", '<div><a href="{}">{}</a> distance {}</div>',
            ((reverse("admin:gallery_image_change", args=[m.image.pk]), _thumb(m.image, 60), f"{m.distance:.4f}") for m in near),
        )

    def save_model(self, request, obj, form, change):
        # The note field is edited here; decisions go through the actions so they are audited.
        Image.objects.filter(pk=obj.pk).update(moderation_note=obj.moderation_note)

    def _moderate(self, request, queryset, state, reason=""):
        for image in queryset:
            services.image_moderate(image=image, actor=request.user, state=state, reason=reason)
        self.message_user(request, f"{queryset.count()} image(s) marked {state}.", messages.SUCCESS)

    @admin.action(description="Approve selected images", permissions=["change"])
    def approve(self, request, queryset):
        self._moderate(request, queryset, ModerationState.APPROVED)

    @admin.action(description="Reject selected images", permissions=["change"])
    def reject(self, request, queryset):
        reason = request.POST.get("reason", "").strip() or "Rejected by staff."
        self._moderate(request, queryset, ModerationState.REJECTED, reason)

    @admin.action(description="Retry failed embeddings", permissions=["change"])
    def retry_embedding(self, request, queryset):
        n = services.images_retry(images=queryset)
        self.message_user(request, f"{n} failed image(s) queued again.", messages.SUCCESS)

    @admin.action(description="Embed selected images again", permissions=["change"])
    def reembed(self, request, queryset):
        n = services.images_reembed(images=queryset)
        self.message_user(request, f"{n} image(s) queued for embedding.", messages.SUCCESS)


@admin.register(Gallery)
class GalleryAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "visibility", "n_images", "n_ready", "n_failed", "n_rejected", "index_status")
    list_filter = ("visibility", "index_dirty")
    search_fields = ("title", "slug", "owner__username")
    prepopulated_fields = {"slug": ("title",)}
    actions = ("rebuild_now",)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("owner")
            .annotate(
                n_images=Count("images"),
                n_ready=Count("images", filter=Q(images__embedding_state=EmbeddingState.READY)),
                n_failed=Count("images", filter=Q(images__embedding_state=EmbeddingState.FAILED)),
                n_rejected=Count("images", filter=Q(images__moderation_state=ModerationState.REJECTED)),
            )
        )

    @admin.display(description="Images", ordering="n_images")
    def n_images(self, obj):
        return obj.n_images

    @admin.display(description="Ready")
    def n_ready(self, obj):
        return obj.n_ready

    @admin.display(description="Failed")
    def n_failed(self, obj):
        return obj.n_failed

    @admin.display(description="Rejected")
    def n_rejected(self, obj):
        return obj.n_rejected

    @admin.display(description="Index")
    def index_status(self, obj):
        build = obj.current_build()
        if build is None:
            return "not built" + (" (stale)" if obj.index_dirty else "")
        return f"v{build.version}, {build.item_count} items, {build.built_at:%Y-%m-%d %H:%M}" + (
            " (stale)" if obj.index_dirty else ""
        )

    @admin.action(description="Rebuild index now")
    def rebuild_now(self, request, queryset):
        from gallery import tasks

        for gallery in queryset:
            tasks.rebuild_index.delay(gallery.pk)
        self.message_user(request, f"Rebuild queued for {queryset.count()} gallery(ies).", messages.SUCCESS)


@admin.register(IndexBuild)
class IndexBuildAdmin(admin.ModelAdmin):
    list_display = ("gallery", "version", "status", "item_count", "n_trees", "built_at", "duration_seconds")
    list_filter = ("status", "gallery")
    readonly_fields = [f.name for f in IndexBuild._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(SystemNotice)
class SystemNoticeAdmin(admin.ModelAdmin):
    list_display = ("key", "message", "updated_at")
