from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from gallery.models import SystemNotice


def _active_weights():
    """(setting, value) of the configured backbone's weights; ('', '') when the backbone is misconfigured."""
    from gallery.embedding import backbones

    try:
        return backbones.active_weights()
    except ImproperlyConfigured:
        return "", ""


def site_status(request):
    """Banners every page shows: tasks running in-process, worker problems."""
    notices = []
    if settings.CELERY_TASK_ALWAYS_EAGER:
        notices.append(
            "No Redis is reachable: images are embedded inside the web process and indexes are not "
            "rebuilt in the background. Start Redis and restart to run the real workers."
        )
    weights_setting, weights = _active_weights()
    if weights == "none":
        notices.append(
            f"The model runs with random weights ({weights_setting}=none): only near-duplicates are found reliably."
        )
    notices.extend(SystemNotice.objects.values_list("message", flat=True))
    return {"site_notices": notices, "moderation_mode": settings.IMAGESEARCH_MODERATION}
