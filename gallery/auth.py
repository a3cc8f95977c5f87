"""Sessions and users on the request path: Django's database session engine and
model backend, reading both with one query. This module holds the whole of it
(the row and its SQL are gallery.models.sessions and gallery.search.reads).

Every signed-in request loads its session and its user. Django's database
engine and model backend read them with two ORM queries; its cached_db engine
(a Redis read, then the user) was measured against this path and kept as the
slower of the two (docs/benchmarks.md, "Sessions"). Here the session row names
its user (models.Session.user, written from the session's data on every save),
gallery.search.reads reads both with one prepared join, and the model backend
takes the user from that row. What is checked does not change: the same expiry
test, the same is_active rule, and django.contrib.auth still verifies the
session's password hash.

    SESSION_ENGINE = "gallery.auth"
    AUTHENTICATION_BACKENDS = ["gallery.auth.ModelBackend"]
    MIDDLEWARE: "gallery.auth.AuthenticationMiddleware" in place of Django's

The backend's dotted path is stored in every signed-in session: renaming it
signs everybody out.
"""

import contextvars

from django.contrib import auth
from django.contrib.auth import backends, get_user_model
from django.contrib.auth import middleware as auth_middleware
from django.contrib.sessions.backends import db
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.functional import SimpleLazyObject

from gallery.search import reads

# The session whose user auth.get_user() is resolving, for ModelBackend.get_user.
_resolving = contextvars.ContextVar("gallery_auth_resolving", default=None)


def user_pk(value):
    """The user primary key a session's data names, or None when it names none (or garbage)."""
    try:
        return None if value is None else get_user_model()._meta.pk.to_python(value)
    except (ValidationError, TypeError, ValueError):
        return None


class SessionStore(db.SessionStore):
    def __init__(self, session_key=None):
        super().__init__(session_key)
        self.loaded_user = None  # the user the row named when it was read, or None

    @classmethod
    def get_model_class(cls):
        from gallery.models import Session

        return Session

    def create_model_instance(self, data):
        session = super().create_model_instance(data)
        session.user_id = user_pk(data.get(auth.SESSION_KEY))
        return session

    def load(self):
        found = reads.unexpired_session(self.session_key, timezone.now()) if self.session_key else None
        if found is None:  # no such session, or expired: a new, empty one (as Django's store does)
            self._session_key = None
            self.loaded_user = None
            return {}
        data, self.loaded_user = found
        return self.decode(data)


def get_user(request):
    """auth.get_user(request), cached on the request like Django's middleware does,
    letting ModelBackend.get_user take the user read with the session row."""
    if not hasattr(request, "_cached_user"):
        token = _resolving.set(request.session)
        try:
            request._cached_user = auth.get_user(request)
        finally:
            _resolving.reset(token)
    return request._cached_user


class AuthenticationMiddleware(auth_middleware.AuthenticationMiddleware):
    def process_request(self, request):
        super().process_request(request)
        request.user = SimpleLazyObject(lambda: get_user(request))


class ModelBackend(backends.ModelBackend):
    def get_user(self, user_id):
        session = _resolving.get()
        user = getattr(session, "loaded_user", None)
        pk = user_pk(user_id)
        if user is None or pk is None or user.pk != pk:
            user = reads.user_by_pk(pk) if pk is not None else None
        return user if user is not None and self.user_can_authenticate(user) else None
