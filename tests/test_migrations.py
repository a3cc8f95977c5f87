"""Upgrades keep what people had: indexed galleries are rebuilt with the
projection, galleries point at their ready build, sessions stay signed in."""

import pytest
from django.contrib.sessions.backends.db import SessionStore as DjangoSessionStore
from django.contrib.sessions.models import Session as DjangoSession
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone


def _migrate(name):
    """Migrate the gallery app to `name`; return the historical apps at that state."""
    executor = MigrationExecutor(connection)
    executor.migrate([("gallery", name)])
    return executor.loader.project_state([("gallery", name)]).apps


@pytest.fixture(autouse=True)
def back_to_the_latest_migration():
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes("gallery"))


@pytest.mark.django_db(transaction=True)
def test_galleries_with_an_index_are_marked_stale_on_upgrade():
    apps = _migrate("0003_image_gallery_embedded_at_index")
    User = apps.get_model("auth", "User")
    Gallery = apps.get_model("gallery", "Gallery")
    IndexBuild = apps.get_model("gallery", "IndexBuild")
    owner = User.objects.create(username="u")
    indexed = Gallery.objects.create(owner=owner, title="a", slug="a")
    failed_only = Gallery.objects.create(owner=owner, title="b", slug="b")
    Gallery.objects.create(owner=owner, title="c", slug="c")  # never built: stays as it is
    IndexBuild.objects.create(gallery=indexed, version=1, status="ready", snapshot_at=timezone.now())
    IndexBuild.objects.create(gallery=failed_only, version=1, status="failed", snapshot_at=timezone.now())

    Gallery = _migrate("0004_rebuild_indexes_with_projection").get_model("gallery", "Gallery")
    dirty = dict(Gallery.objects.values_list("slug", "index_dirty"))
    assert dirty == {"a": True, "b": False, "c": False}
    assert Gallery.objects.get(slug="a").index_dirty_since is not None


@pytest.mark.django_db(transaction=True)
def test_galleries_point_at_their_ready_build_after_upgrade():
    apps = _migrate("0004_rebuild_indexes_with_projection")
    owner = apps.get_model("auth", "User").objects.create(username="u")
    Gallery, IndexBuild = apps.get_model("gallery", "Gallery"), apps.get_model("gallery", "IndexBuild")
    built = Gallery.objects.create(owner=owner, title="a", slug="a")
    never = Gallery.objects.create(owner=owner, title="b", slug="b")
    IndexBuild.objects.create(gallery=built, version=1, status="superseded", snapshot_at=timezone.now())
    ready = IndexBuild.objects.create(gallery=built, version=2, status="ready", snapshot_at=timezone.now())
    IndexBuild.objects.create(gallery=built, version=3, status="failed", snapshot_at=timezone.now())

    Gallery = _migrate("0005_gallery_current_index").get_model("gallery", "Gallery")
    assert Gallery.objects.get(pk=built.pk).current_index_id == ready.pk
    assert Gallery.objects.get(pk=never.pk).current_index_id is None


@pytest.mark.django_db(transaction=True)
def test_signed_in_sessions_carry_over_with_their_user():
    apps = _migrate("0005_gallery_current_index")
    owner = apps.get_model("auth", "User").objects.create(username="u")
    old_sessions = DjangoSession  # django.contrib.sessions' own table, which the upgrade reads
    signed_in, anonymous, expired = DjangoSessionStore(), DjangoSessionStore(), DjangoSessionStore()
    signed_in.update({"_auth_user_id": str(owner.pk), "_auth_user_backend": "gallery.auth.ModelBackend"})
    anonymous["theme"] = "dark"
    expired["_auth_user_id"] = str(owner.pk)
    for store in (signed_in, anonymous, expired):
        store.save()  # Django's own table: what an installation before the upgrade has
    old_sessions.objects.filter(session_key=expired.session_key).update(expire_date=timezone.now())
    forged = old_sessions.objects.create(
        session_key="x" * 32, session_data="not-signed", expire_date=signed_in.get_expiry_date()
    )

    Session = _migrate("0006_session_with_user").get_model("gallery", "Session")
    users = dict(Session.objects.values_list("session_key", "user_id"))
    assert users == {signed_in.session_key: owner.pk, anonymous.session_key: None, forged.session_key: None}
    assert (
        Session.objects.get(session_key=signed_in.session_key).session_data
        == old_sessions.objects.get(session_key=signed_in.session_key).session_data
    )


@pytest.mark.django_db(transaction=True)
def test_sessions_signed_in_through_djangos_backend_name_the_apps_after_0006():
    apps = _migrate("0005_gallery_current_index")
    owner = apps.get_model("auth", "User").objects.create(username="u")
    before = DjangoSessionStore()
    before.update({"_auth_user_id": str(owner.pk), "_auth_user_backend": "django.contrib.auth.backends.ModelBackend"})
    before.save()

    Session = _migrate("0006_session_with_user").get_model("gallery", "Session")
    data = DjangoSessionStore().decode(Session.objects.get(session_key=before.session_key).session_data)
    assert data == {"_auth_user_id": str(owner.pk), "_auth_user_backend": "gallery.auth.ModelBackend"}
