"""The staff's image tools: the moderation queue and the image admin.

Every moderation decision goes through services.image_moderate (audited), every
deletion through services.image_delete (stored files go too).
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from gallery import selectors, services
from gallery.models import Image, ModerationEvent, ModerationState

DEFAULT_REJECT_REASON = "Rejected by staff."


def _thumb(image, large=False):
    if not image.thumbnail:
        return "—"
    return format_html(
        '<img src="{}" alt="{}" loading="lazy" class="{}">',
        reverse("image_thumb", args=[image.pk]),
        image.original_name,
        "gallery-thumb-large" if large else "gallery-thumb",
    )


class ModerationEventInline(admin.TabularInline):
    model = ModerationEvent
    extra = 0
    can_delete = False
    verbose_name = "moderation decision"
    verbose_name_plural = "moderation history"
    fields = ("created_at", "by", "from_state", "to_state", "reason")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="By")
    def by(self, obj):
        return obj.actor.get_username() if obj.actor else "automatic"


class ImageActionForm(ActionForm):
    reason = forms.CharField(required=False, label="Reason (for reject)", max_length=500)


class FlaggedFilter(admin.SimpleListFilter):
    title = "auto-flag"
    parameter_name = "flagged"

    def lookups(self, request, model_admin):
        return [("yes", "Flagged: resembles a rejected image"), ("no", "Not flagged")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(flagged=True)
        if self.value() == "no":
            return queryset.filter(flagged=False)
        return queryset


class ImageAdmin(admin.ModelAdmin):
    class Media:
        css = {"all": ["gallery/admin.css"]}

    action_form = ImageActionForm
    change_form_template = "admin/gallery/image_change_form.html"
    list_display = (
        "thumb",
        "original_name",
        "gallery",
        "owner",
        "moderation_state",
        "flag",
        "embedding_state",
        "created_at",
    )
    list_display_links = ("thumb", "original_name")
    list_filter = (
        "moderation_state",
        FlaggedFilter,
        "embedding_state",
        "gallery",
        "gallery__owner",
        "created_at",
    )
    search_fields = ("original_name", "gallery__title", "gallery__owner__username", "sha256")
    list_select_related = ("gallery", "gallery__owner")
    ordering = ("created_at", "id")  # oldest first: the moderation queue order
    date_hierarchy = "created_at"
    list_per_page = 50
    actions = ("approve", "reject", "retry_embedding", "reembed", "delete_selected")
    inlines = (ModerationEventInline,)
    readonly_fields = (
        "preview",
        "moderation_state",
        "moderation_note",
        "moderated_by",
        "moderated_at",
        "flag_details",
        "rejected_neighbours",
        "gallery",
        "owner",
        "original_name",
        "sha256",
        "width",
        "height",
        "byte_size",
        "content_type",
        "uploader",
        "created_at",
        "embedding_state",
        "embedding_error",
        "embedding_version",
        "embedded_at",
        "attempts",
    )
    fieldsets = (
        (None, {"fields": ("preview",)}),
        (
            "Moderation",
            {
                "fields": (
                    "moderation_state",
                    "moderation_note",
                    "moderated_by",
                    "moderated_at",
                    "flag_details",
                    "rejected_neighbours",
                )
            },
        ),
        (
            "Image",
            {
                "fields": (
                    "gallery",
                    "owner",
                    "original_name",
                    "uploader",
                    "created_at",
                    "width",
                    "height",
                    "byte_size",
                    "content_type",
                    "sha256",
                )
            },
        ),
        (
            "Embedding",
            {
                "fields": (
                    "embedding_state",
                    "embedding_error",
                    "embedding_version",
                    "embedded_at",
                    "attempts",
                )
            },
        ),
    )

    def has_add_permission(self, request):
        return False  # images arrive through uploads, which validate and embed them

    # --- Columns and read-only fields ---

    @admin.display(description="Image")
    def thumb(self, obj):
        return _thumb(obj)

    @admin.display(description="Owner", ordering="gallery__owner__username")
    def owner(self, obj):
        return obj.gallery.owner

    @admin.display(description="Auto-flag", ordering="-flagged")
    def flag(self, obj):
        if not obj.flagged:
            return ""
        return format_html('<span title="{}" class="gallery-flag">⚑ {}</span>', obj.flag_reason, obj.flag_reason)

    @admin.display(description="Auto-flag")
    def flag_details(self, obj):
        if not obj.flagged:
            return "Not flagged."
        if obj.flag_match_id is None:
            return obj.flag_reason
        return format_html(
            '{}<br><a href="{}">{}</a>',
            obj.flag_reason,
            reverse("admin:gallery_image_change", args=[obj.flag_match_id]),
            _thumb(obj.flag_match, large=True) if obj.flag_match else "the rejected image",
        )

    @admin.display(description="Preview")
    def preview(self, obj):
        return format_html(
            '<a href="{}" target="_blank" rel="noopener"><img src="{}" alt="{}" '
            'class="gallery-preview"></a>'
            '<div class="help">{} × {} px. Click for the original.</div>',
            reverse("image_file", args=[obj.pk]),
            reverse("image_file", args=[obj.pk]),
            obj.original_name,
            obj.width,
            obj.height,
        )

    @admin.display(description="Nearest rejected images")
    def rejected_neighbours(self, obj):
        near = selectors.rejected_neighbours(image=obj)
        if not near:
            return "No rejected image of this gallery to compare with."
        return format_html_join(
            "",
            '<div class="gallery-neighbour"><a href="{}">{}</a><br>distance {}<br><small>{}</small></div>',
            (
                (
                    reverse("admin:gallery_image_change", args=[m.image.pk]),
                    _thumb(m.image, large=True),
                    f"{m.distance:.4f}",
                    m.image.moderation_note or "",
                )
                for m in near
            ),
        )

    # --- Moderation from the change page ---

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}_moderate"
        return [
            path("<path:object_id>/moderate/", self.admin_site.admin_view(self.moderate_view), name=name),
        ] + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        extra_context.update(
            moderate_url=reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_moderate", args=[object_id]),
            queue_count=Image.objects.filter(moderation_state=ModerationState.PENDING).count(),
            default_reject_reason=DEFAULT_REJECT_REASON,
            # Every field is read-only: decisions go through the moderation form above.
            show_save=False,
            show_save_and_continue=False,
            show_save_and_add_another=False,
        )
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        # Nothing here is editable; a full save() could overwrite the worker's embedding write.
        pass

    @staticmethod
    def next_in_queue(*, after):
        """Return the oldest pending image other than `after`, or None."""
        return (
            Image.objects.filter(moderation_state=ModerationState.PENDING)
            .exclude(pk=after.pk)
            .order_by("created_at", "id")
            .first()
        )

    def moderate_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        image = self.get_object(request, object_id)
        if image is None:
            raise Http404("No such image.")
        if not self.has_change_permission(request, image):
            raise PermissionDenied
        decision = request.POST.get("decision")
        if decision == "approve":
            services.image_moderate(image=image, actor=request.user, state=ModerationState.APPROVED)
            self.message_user(request, f"“{image.original_name}” approved.", messages.SUCCESS)
        elif decision == "reject":
            reason = request.POST.get("reason", "").strip()[:500] or DEFAULT_REJECT_REASON
            services.image_moderate(image=image, actor=request.user, state=ModerationState.REJECTED, reason=reason)
            self.message_user(request, f"“{image.original_name}” rejected: {reason}", messages.SUCCESS)
        else:
            self.message_user(request, "Choose approve or reject.", messages.ERROR)
            return HttpResponseRedirect(self._change_url(image))
        if request.POST.get("next"):
            following = self.next_in_queue(after=image)
            if following is None:
                self.message_user(request, "The moderation queue is empty.", messages.INFO)
                return HttpResponseRedirect(reverse("admin:gallery_moderationqueueitem_changelist"))
            return HttpResponseRedirect(reverse("admin:gallery_moderationqueueitem_change", args=[following.pk]))
        return HttpResponseRedirect(self._change_url(image))

    def _change_url(self, image):
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[image.pk])

    # --- Bulk actions ---

    def _moderate(self, request, queryset, state, reason=""):
        n = services.images_moderate(images=queryset, actor=request.user, state=state, reason=reason)
        self.message_user(request, f"{n} image(s) marked {state}.", messages.SUCCESS)

    @admin.action(description="Approve selected images", permissions=["change"])
    def approve(self, request, queryset):
        self._moderate(request, queryset, ModerationState.APPROVED)

    @admin.action(description="Reject selected images (with the reason above)", permissions=["change"])
    def reject(self, request, queryset):
        reason = request.POST.get("reason", "").strip()[:500] or DEFAULT_REJECT_REASON
        self._moderate(request, queryset, ModerationState.REJECTED, reason)

    @admin.action(description="Retry failed embeddings", permissions=["change"])
    def retry_embedding(self, request, queryset):
        n = services.images_retry(images=queryset)
        self.message_user(request, f"{n} failed image(s) queued again.", messages.SUCCESS)

    @admin.action(description="Embed selected images again", permissions=["change"])
    def reembed(self, request, queryset):
        n = services.images_reembed(images=queryset)
        self.message_user(request, f"{n} image(s) queued for embedding.", messages.SUCCESS)

    def delete_model(self, request, obj):
        services.image_delete(image=obj)

    def delete_queryset(self, request, queryset):
        services.images_delete(images=queryset)


class ModerationQueueAdmin(ImageAdmin):
    """Pending images, oldest first: what a moderator works through."""

    list_display = ("thumb", "original_name", "gallery", "owner", "flag", "embedding_state", "created_at")
    list_filter = (FlaggedFilter, "embedding_state", "gallery", "gallery__owner", "created_at")
    actions = ("approve", "reject", "delete_selected")

    def get_queryset(self, request):
        return super().get_queryset(request).filter(moderation_state=ModerationState.PENDING)
