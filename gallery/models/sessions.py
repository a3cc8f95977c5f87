from importlib import import_module

from django.conf import settings
from django.contrib.sessions.base_session import AbstractBaseSession
from django.db import models


class Session(AbstractBaseSession):
    """A session that names its signed-in user, so one query reads both (gallery.auth).

    Django's own session row keeps the user only inside its signed data; this
    column is written from that data on every save, and deleting a user deletes
    their sessions.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+", editable=False
    )

    class Meta(AbstractBaseSession.Meta):
        db_table = "gallery_session"

    @classmethod
    def get_session_store_class(cls):
        # SESSION_ENGINE is gallery.auth, which reads this row; named, not imported, so models stay the bottom layer.
        return import_module(settings.SESSION_ENGINE).SessionStore
