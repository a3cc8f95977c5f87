from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("gallery.urls")),
]

handler404 = "gallery.views.errors.not_found"
handler500 = "gallery.views.errors.server_error"
