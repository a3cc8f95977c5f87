"""Django's database sessions and model backend, reading with prepared SQL.

Every signed-in request loads its session and its user. Django's own classes
build both queries through the ORM each time (about 1.4 ms of CPU together on a
2-core host, more than the search itself); these subclasses change only how the
row is read (gallery/sql.py), not what is checked: the same expiry test, the same
is_active rule, and django.contrib.auth still verifies the session's password hash.

    SESSION_ENGINE = "gallery.auth"
    AUTHENTICATION_BACKENDS = ["gallery.auth.ModelBackend"]
"""

from django.contrib.auth import backends
from django.contrib.sessions.backends import db
from django.utils import timezone

from gallery import sql


class SessionStore(db.SessionStore):
    def _get_session_from_db(self):
        session = sql.unexpired_session(self.session_key, timezone.now()) if self.session_key else None
        if session is None:
            self._session_key = None
        return session


class ModelBackend(backends.ModelBackend):
    def get_user(self, user_id):
        user = sql.user_by_pk(user_id)
        return user if user is not None and self.user_can_authenticate(user) else None
