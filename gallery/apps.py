from django.apps import AppConfig


class GalleryConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "gallery"
    verbose_name = "Galleries"

    def ready(self):
        from gallery import checks  # noqa: F401  (registers system checks)
