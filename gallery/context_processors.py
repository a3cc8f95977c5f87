from django.conf import settings

from gallery.models import SystemNotice


def site_status(request):
    """Banners every page shows: tasks running in-process, worker problems."""
    notices = []
    if settings.CELERY_TASK_ALWAYS_EAGER:
        notices.append(
            "No Redis is reachable: images are embedded inside the web process and indexes are not "
            "rebuilt in the background. Start Redis and restart to run the real workers."
        )
    if settings.IMAGESEARCH_VGG16_WEIGHTS == "none":
        notices.append(
            "The model runs with random weights (IMAGESEARCH_VGG16_WEIGHTS=none): only near-duplicates "
            "are found reliably."
        )
    notices.extend(SystemNotice.objects.values_list("message", flat=True))
    return {"site_notices": notices, "moderation_mode": settings.IMAGESEARCH_MODERATION}
