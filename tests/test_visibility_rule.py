"""Who may see an image is stated once (gallery/access.py) and rendered three
ways: a Q for ImageQuerySet.visible_to (listings), a row check for
Image.is_visible_to (image_for_view) and an SQL predicate in
reads.visible_candidates (search results). These tests hold the three equal over
every combination that matters, the prepared reads of gallery/search/reads.py
equal to what the ORM reads, and the one-query session path (gallery/auth.py) to Django's checks."""

import itertools
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gallery import access, auth, embedding, services
from gallery.models import Gallery, Image, IndexBuild, ModerationState, Session, Visibility
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


def _request_with_session(key):
    request = RequestFactory().get("/")
    request.session = auth.SessionStore(key)
    return request


def test_one_query_reads_the_session_and_its_user(client, owner):
    client.force_login(owner)
    key = client.cookies["sessionid"].value
    assert Session.objects.get(session_key=key).user_id == owner.pk  # written from the session's data
    request = _request_with_session(key)
    with CaptureQueriesContext(connection) as queries:
        assert auth.get_user(request) == owner
    assert len(queries) == 1
    assert auth.get_user(request) is request._cached_user  # once per request

    client.logout()
    assert not Session.objects.filter(session_key=key).exists()
    client.force_login(owner)
    key = client.cookies["sessionid"].value
    owner.delete()  # and with them their sessions
    assert not Session.objects.filter(session_key=key).exists()
    assert auth.get_user(_request_with_session(key)).is_anonymous


def test_a_row_naming_another_user_than_its_data_is_not_trusted(client, owner):
    other = get_user_model().objects.create_user("other", password="pw-other-123")
    client.force_login(owner)
    key = client.cookies["sessionid"].value
    Session.objects.filter(session_key=key).update(user=other)  # never written so; the data decides
    assert auth.get_user(_request_with_session(key)) == owner


def test_session_and_user_reads_keep_djangos_checks(client, owner):
    client.force_login(owner)
    key = client.cookies["sessionid"].value
    store = auth.SessionStore(key)
    assert int(store["_auth_user_id"]) == owner.pk
    assert Session.objects.get(session_key=key).get_decoded()["_auth_user_id"] == str(owner.pk)  # admin, shell
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    assert dict(auth.SessionStore(key).load()) == {}  # expired: empty, as Django's own store
    backend = auth.ModelBackend()
    assert backend.get_user(owner.pk) == owner
    assert backend.get_user(str(owner.pk)) == owner
    assert backend.get_user("not-a-number") is None
    get_user_model().objects.filter(pk=owner.pk).update(is_active=False)
    assert backend.get_user(owner.pk) is None


def test_a_password_change_signs_other_sessions_out(client, owner):
    client.force_login(owner)
    assert client.get("/").wsgi_request.user == owner
    owner.set_password("a-new-password-456")
    owner.save()
    response = client.get("/", follow=False)
    assert response.wsgi_request.user.is_anonymous
