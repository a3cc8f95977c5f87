from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # Django's own password-reset views (the rest of auth.urls below), in the site's templates;
    # "done" says how long the link works.
    path(
        "accounts/password_reset/done/",
        auth_views.PasswordResetDoneView.as_view(
            extra_context={"reset_minutes": max(1, settings.PASSWORD_RESET_TIMEOUT // 60)}
        ),
        name="password_reset_done",
    ),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("gallery.urls")),
]

handler400 = "gallery.views.errors.bad_request"  # also "upload too large" (413)
handler403 = "gallery.views.errors.permission_denied"
handler404 = "gallery.views.errors.not_found"
handler500 = "gallery.views.errors.server_error"
