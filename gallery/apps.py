from django.apps import AppConfig


class GalleryConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "gallery"
    verbose_name = "Galleries"

    def ready(self):
        # Registers system checks, signal receivers and the Celery tasks (gallery.jobs finds tasks by name).
        from gallery import checks, signals, tasks  # noqa: F401
