"""Two rebuilds of one gallery never overlap: a lock per gallery in the real
Redis; rebuild requests coalesce into one build."""

import threading

import pytest
from django.db import connection

from gallery import locks, tasks
from gallery.models import Gallery, IndexBuild
from tests import live, vectors

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


@pytest.fixture
def gallery(owner):
    live.require_redis()
    live.flush_broker()
    gallery = Gallery.objects.create(owner=owner, title="Locked", slug="locked", index_dirty=True)
    vectors.add_images(gallery, vectors.clustered(5_000, seed=6))
    return gallery


def test_a_rebuild_waits_out_a_held_lock_and_builds_after_release(gallery):
    with locks.gallery_lock(gallery.pk) as held:
        assert held
        assert tasks.rebuild_index.run(gallery.pk) is None
        assert not IndexBuild.objects.filter(gallery=gallery).exists()
        with locks.gallery_lock(gallery.pk) as second:
            assert not second
    assert tasks.rebuild_index.run(gallery.pk) == 1


def test_two_concurrent_rebuilds_of_a_gallery_never_overlap(gallery):
    barrier = threading.Barrier(2)
    results = []

    def run():
        barrier.wait()
        try:
            results.append(tasks.rebuild_index.run(gallery.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert sorted(results, key=str) == [1, None]
    builds = list(IndexBuild.objects.filter(gallery=gallery))
    assert len(builds) == 1 and builds[0].item_count == 5_000


def test_builds_that_do_run_one_after_another_do_not_overlap_in_time(gallery):
    for _ in range(2):
        Gallery.objects.filter(pk=gallery.pk).update(index_dirty=True)
        tasks.rebuild_index.run(gallery.pk)
    spans = sorted(
        (b.built_at.timestamp() - b.duration_seconds, b.built_at.timestamp())
        for b in IndexBuild.objects.filter(gallery=gallery)
    )
    assert len(spans) == 2 and spans[0][1] <= spans[1][0]


def test_the_lock_is_released_when_a_build_fails(gallery, monkeypatch):
    from gallery.search import store

    def broken_build(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store, "build", broken_build)
    with pytest.raises(OSError):
        tasks.rebuild_index.run(gallery.pk)
    assert IndexBuild.objects.get(gallery=gallery).status == IndexBuild.Status.FAILED
    with locks.gallery_lock(gallery.pk) as acquired:
        assert acquired
    gallery.refresh_from_db()
    assert gallery.index_dirty  # still stale: beat will try again


def test_many_changes_make_one_rebuild(gallery):
    for _ in range(10):
        Gallery.objects.filter(pk=gallery.pk).mark_index_stale()
    assert tasks.rebuild_stale_indexes.run() == [gallery.pk]
    assert tasks.rebuild_index.run(gallery.pk) == 1
    # A second delivery of the same request, or beat's next tick, builds nothing.
    assert tasks.rebuild_index.run(gallery.pk) is None
    assert tasks.rebuild_stale_indexes.run() == []
    assert IndexBuild.objects.filter(gallery=gallery).count() == 1
