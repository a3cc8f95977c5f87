"""Exports in the admin: what was asked and how it went, for staff. Metadata only: the file is the owner's."""

from django.contrib import admin

from gallery.services import exports as export_services


class ExportAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "gallery",
        "requested_by",
        "kind",
        "format",
        "status",
        "row_count",
        "size_bytes",
        "created_at",
        "expires",
    )
    list_filter = ("status", "kind", "format")
    list_select_related = ("gallery", "requested_by")
    search_fields = ("gallery__title", "gallery__slug", "requested_by__username")
    # `file` (the storage name) is left out: staff see that an export exists, never a way to its contents.
    fields = (
        "gallery",
        "requested_by",
        "kind",
        "format",
        "params_shown",
        "status",
        "error",
        "embedding_version",
        "row_count",
        "size_bytes",
        "created_at",
        "finished_at",
        "expires",
    )
    readonly_fields = fields

    @admin.display(description="Query")
    def params_shown(self, obj):
        return {k: v for k, v in obj.params.items() if k not in ("base_url", "outside")} or "—"

    @admin.display(description="Expires")
    def expires(self, obj):
        return export_services.export_expires_at(obj)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
