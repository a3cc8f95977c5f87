"""Upgrading marks every indexed gallery stale, so beat rebuilds it with the projection."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone


def _migrate(name):
    """Migrate the gallery app to `name`; return the historical apps at that state."""
    executor = MigrationExecutor(connection)
    executor.migrate([("gallery", name)])
    return executor.loader.project_state([("gallery", name)]).apps


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
