"""Who may see an image is stated once (gallery/access.py) and rendered three
ways: a Q for ImageQuerySet.visible_to (listings), a row check for
Image.is_visible_to (image_for_view) and an SQL predicate in
reads.visible_candidates (search results). These tests hold the three equal over
every combination that matters, the prepared reads of gallery/search/reads.py
equal to what the ORM reads, and the session path to Django's checks."""

import itertools
from datetime import timedelta
from importlib import import_module

import pytest
from django.conf import settings
from django.contrib.auth import get_user, get_user_model
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.models import Session as DjangoSession
from django.core.cache import caches
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gallery import access, auth, embedding, services
from gallery.models import Gallery, Image, IndexBuild, ModerationState, Visibility
from gallery.search import reads
from tests import vectors

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(owner):
    """Two galleries (private, public) holding one image per (moderation state, flagged)."""
    images = []
    for visibility in (Visibility.PRIVATE, Visibility.PUBLIC):
        gallery = Gallery.objects.create(owner=owner, title=visibility, slug=f"g-{visibility}", visibility=visibility)
        combos = list(itertools.product(ModerationState.values, (False, True)))
        vecs = vectors.clustered(len(combos), seed=1)
        for (state, flagged), img in zip(combos, vectors.add_images(gallery, vecs, prefix=visibility)):
            Image.objects.filter(pk=img.pk).update(moderation_state=state, flagged=flagged)
            images.append(img.pk)
    return images


@pytest.mark.parametrize("mode", ["pre", "post"])
def test_one_row_and_one_gallery_rules_equal_the_queryset(world, owner, other, staff, settings, mode):
    settings.IMAGESEARCH_MODERATION = mode
    version = embedding.version()
    now = timezone.now()
    for user in (AnonymousUser(), owner, other, staff):
        expected = set(Image.objects.visible_to(user).filter(pk__in=world).values_list("pk", flat=True))
        per_row = {pk for pk in world if Image.objects.select_related("gallery").get(pk=pk).is_visible_to(user)}
        assert per_row == expected, (user, mode)
        for gallery in Gallery.objects.all():
            sees_all = access.sees_every_image(user, gallery)
            if not sees_all and gallery.visibility != Visibility.PUBLIC:
                continue  # search_vector answers [] before asking
            rows = reads.visible_candidates(
                gallery_id=gallery.pk,
                embedding_version=version,
                pks=world,
                recent_after=now,
                new_after=now,
                exclude_id=None,
                public_only=not sees_all,
            )
            searchable = set(
                Image.objects.searchable()
                .visible_to(user)
                .filter(gallery=gallery, pk__in=world)
                .values_list("pk", flat=True)
            )
            assert {row[0] for row in rows} == searchable, (user, mode, gallery.visibility)


def test_candidates_flag_recent_and_new_rows_and_honour_exclude(owner):
    gallery = Gallery.objects.create(owner=owner, title="t", slug="t")
    old = vectors.add_images(gallery, vectors.clustered(3, seed=2), embedded_ago=timedelta(hours=2), prefix="old")
    new = vectors.add_images(gallery, vectors.clustered(2, seed=3), embedded_ago=timedelta(seconds=5), prefix="new")
    now = timezone.now()
    rows = reads.visible_candidates(
        gallery_id=gallery.pk,
        embedding_version=embedding.version(),
        pks=[old[0].pk, old[1].pk],
        recent_after=now - timedelta(hours=1),
        new_after=now - timedelta(minutes=1),
        exclude_id=old[1].pk,
        public_only=False,
    )
    by_pk = {pk: (name, recent, is_new) for pk, name, recent, is_new in rows}
    # old[0] asked for by pk; old[1] excluded; old[2] neither asked for nor recent; new ones are the delta.
    assert set(by_pk) == {old[0].pk, new[0].pk, new[1].pk}
    assert by_pk[old[0].pk] == (old[0].original_name, False, False)
    assert by_pk[new[0].pk] == (new[0].original_name, True, True)


def test_image_with_gallery_reads_what_the_orm_reads(owner):
    gallery = Gallery.objects.create(owner=owner, title="t", slug="t", visibility=Visibility.PUBLIC)
    image = vectors.add_images(gallery, vectors.clustered(1, seed=4))[0]
    got = reads.image_with_gallery(image.pk)
    orm = Image.objects.select_related("gallery").get(pk=image.pk)
    for model, a, b in ((Image, got, orm), (Gallery, got.gallery, orm.gallery)):
        fields = [f.attname for f in model._meta.concrete_fields]
        assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
    assert bytes(got.embedding) == bytes(orm.embedding)
    assert reads.image_with_gallery(image.pk + 1000) is None


def test_the_current_build_follows_the_gallery_row(owner):
    gallery = Gallery.objects.create(owner=owner, title="t", slug="t")
    vectors.add_images(gallery, vectors.clustered(20, seed=5))
    stale = Gallery.objects.get(pk=gallery.pk)
    assert stale.current_build() is None
    first = services.gallery_rebuild_index(gallery_id=gallery.pk)
    assert stale.current_build() == first  # a row read before the first build asks the database
    second = services.gallery_rebuild_index(gallery_id=gallery.pk)
    fresh = Gallery.objects.get(pk=gallery.pk)
    assert fresh.current_index_id == second.pk
    assert fresh.current_build() == second  # read once, then kept by this process
    with CaptureQueriesContext(connection) as queries:
        assert Gallery.objects.get(pk=gallery.pk).current_build().checksum == second.checksum
    assert len(queries) == 1  # the gallery row only
    assert IndexBuild.objects.get(pk=first.pk).status == IndexBuild.Status.SUPERSEDED


@pytest.fixture
def session_cache(settings):
    """A process-local cache for the sessions (the Redis one is tested below against a dead port)."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def _request_with_session(key):
    request = RequestFactory().get("/")
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(key)
    return request


def test_a_signed_in_request_reads_its_session_from_the_cache_and_its_user_with_one_query(client, owner, session_cache):
    client.force_login(owner)
    key = client.cookies["sessionid"].value
    request = _request_with_session(key)
    with CaptureQueriesContext(connection) as queries:
        assert get_user(request) == owner
    assert len(queries) == 1  # the user: the session came from the cache
    assert "auth_user" in queries[0]["sql"]

    client.logout()
    assert not DjangoSession.objects.filter(session_key=key).exists()
    assert get_user(_request_with_session(key)).is_anonymous  # gone from the cache too
    client.force_login(owner)
    key = client.cookies["sessionid"].value
    owner.delete()
    assert get_user(_request_with_session(key)).is_anonymous


def test_the_session_path_keeps_djangos_checks(client, owner, session_cache):
    client.force_login(owner)
    key = client.cookies["sessionid"].value
    DjangoSession.objects.filter(session_key=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    caches["default"].clear()
    assert get_user(_request_with_session(key)).is_anonymous  # expired: signed out, as with Django's own store
    backend = auth.ModelBackend()
    assert backend.get_user(owner.pk) == owner
    assert backend.get_user(owner.pk + 1000) is None
    get_user_model().objects.filter(pk=owner.pk).update(is_active=False)
    assert backend.get_user(owner.pk) is None


def test_sessions_keep_working_when_the_cache_redis_is_down(client, owner, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "gallery.auth.FailSoftRedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    cache = caches["default"]
    assert cache.get("k", "missing") == "missing"
    cache.set("k", 1)  # logged, not raised
    assert cache.add("k", 1) is False and cache.delete("k") is False
    assert client.login(username="owner", password="pw-owner-123")
    assert client.get("/").wsgi_request.user == owner  # read from the database
    client.logout()
    assert client.get("/").wsgi_request.user.is_anonymous


def test_a_password_change_signs_other_sessions_out(client, owner):
    client.force_login(owner)
    assert client.get("/").wsgi_request.user == owner
    owner.set_password("a-new-password-456")
    owner.save()
    response = client.get("/", follow=False)
    assert response.wsgi_request.user.is_anonymous
