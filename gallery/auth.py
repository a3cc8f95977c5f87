"""Sessions and users on the request path.

Sessions are Django's cached_db engine: the database row is the truth and the
cache (Redis, IMAGESEARCH_CACHE_URL) saves the read on each request. The cache
here fails soft: with Redis down a read is a miss and a write is logged, so
people stay signed in through a broker outage. The model backend differs from
Django's only in get_user, which reads the user with one prepared statement
(gallery.search.reads) instead of an ORM query compiled per request; the same
is_active rule applies and django.contrib.auth still verifies the session's
password hash.

    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    CACHES["default"]["BACKEND"] = "gallery.auth.FailSoftRedisCache"
    AUTHENTICATION_BACKENDS = ["gallery.auth.ModelBackend"]
"""

import logging

from django.contrib.auth import backends
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache

from gallery.search import reads

logger = logging.getLogger(__name__)


class ModelBackend(backends.ModelBackend):
    def get_user(self, user_id):
        user = reads.user_by_pk(user_id)
        return user if user is not None and self.user_can_authenticate(user) else None


class FailSoftRedisCache(RedisCache):
    """Django's Redis cache, treating an unreachable Redis as an empty cache (reads miss, writes are logged)."""

    def _soft(self, name, default, *args):
        try:
            return getattr(super(), name)(*args)
        except Exception as exc:  # redis-py raises ConnectionError, TimeoutError, ...
            logger.warning("cache %s failed (%s: %s); carrying on without the cache", name, type(exc).__name__, exc)
            return default

    def get(self, key, default=None, version=None):
        return self._soft("get", default, key, default, version)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._soft("set", None, key, value, timeout, version)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._soft("add", False, key, value, timeout, version)

    def delete(self, key, version=None):
        return self._soft("delete", False, key, version)

    def has_key(self, key, version=None):
        return self._soft("has_key", False, key, version)
