from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("gallery.urls")),
]

handler400 = "gallery.views.errors.bad_request"  # also "upload too large" (413)
handler403 = "gallery.views.errors.permission_denied"
handler404 = "gallery.views.errors.not_found"
handler500 = "gallery.views.errors.server_error"
