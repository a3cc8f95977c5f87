from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from gallery.models import SystemNotice

# What a notice the workers post says to anyone but staff: the stored text (a weights file's
# path, an errno, a setting's name) is technical, for the people who run the server.
PLAIN_NOTICES = {
    SystemNotice.WEIGHTS: "Similarity search is being set up on this server: new images wait to be processed "
    "and search with a picture may not work yet. Try again later.",
}
PLAIN_NOTICE = "Part of this server needs attention from its administrators; some features may be slow or unavailable."


def _active_weights():
    """(setting, value) of the configured backbone's weights; ('', '') when the backbone is misconfigured."""
    from gallery.embedding import backbones

    try:
        return backbones.active_weights()
    except ImproperlyConfigured:
        return "", ""


def site_status(request):
    """Banners every page shows: to staff, what is wrong and why; to everyone else, a plain sentence or none."""
    staff = getattr(request.user, "is_staff", False)
    notices = []
    if settings.CELERY_TASK_ALWAYS_EAGER:
        notices.append(
            "No Redis is reachable: images are embedded inside the web process and indexes are not "
            "rebuilt in the background. Start Redis and restart to run the real workers."
            if staff
            else "This server processes new images more slowly than usual for now: uploads take longer to finish."
        )
    weights_setting, weights = _active_weights()
    if weights == "none":
        notices.append(
            f"The model runs with random weights ({weights_setting}=none): only near-duplicates are found reliably."
            if staff
            else "This server runs a test model: only near-copies of a picture are found reliably."
        )
    for key, message in SystemNotice.objects.values_list("key", "message"):
        plain = PLAIN_NOTICES.get(key, PLAIN_NOTICE)
        if staff:
            notices.append(message)
        elif plain not in notices:
            notices.append(plain)
    return {"site_notices": notices, "moderation_mode": settings.IMAGESEARCH_MODERATION}
