"""A missing or corrupt index never breaks search: results come from an exact
scan, the gallery is queued for a rebuild, the broken version is not verified
again on every query, and the next rebuild heals it."""

import pytest
from django.urls import reverse

from gallery import search, tasks
from gallery.models import Gallery
from gallery.search import cache, store
from tests import live, vectors

pytestmark = pytest.mark.django_db


@pytest.fixture
def built(owner):
    return vectors.indexed_gallery(owner, "fallback")


def _paths(build):
    return store.local_paths(build.gallery_id, build.version)


def _exact(gallery, vec, exclude=None, k=10):
    return search.exact_search(gallery=gallery, vectors=vec[None, :], k=k, exclude_ids=[exclude] if exclude else None)[
        0
    ]


def _corrupt_middle(path):
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(size // 2)
        fh.write(b"\xff" * 4096)


@pytest.mark.parametrize("damage", ["garbage in the forest", "truncated forest", "missing forest", "truncated vectors"])
def test_a_damaged_index_falls_back_to_exact_search_and_marks_the_gallery_stale(built, owner, damage):
    gallery, images, vecs, build = built
    ann, ids, vec = _paths(build)[:3]
    if damage == "garbage in the forest":
        _corrupt_middle(ann)
    elif damage == "truncated forest":
        with open(ann, "r+b") as fh:
            fh.truncate(ann.stat().st_size // 3)
    elif damage == "missing forest":
        ann.unlink()
    else:
        with open(vec, "r+b") as fh:
            fh.truncate(vec.stat().st_size - 2048)
    got = search.similar_to_image(user=owner, image=images[3], k=10)
    assert [m.image.pk for m in got] == _exact(gallery, vecs[3], exclude=images[3].pk)
    gallery.refresh_from_db()
    assert gallery.index_dirty
    assert cache.is_broken(gallery.pk, build.version)


def test_a_broken_version_is_not_hashed_again_on_every_query(built, owner, monkeypatch):
    gallery, images, vecs, build = built
    _corrupt_middle(_paths(build)[0])
    calls = []
    real = store.checksum
    monkeypatch.setattr(store, "checksum", lambda paths: calls.append(1) or real(paths))
    for i in range(5):
        assert len(search.similar_to_image(user=owner, image=images[i], k=5)) == 5
    assert len(calls) == 1


def test_the_page_still_answers_with_a_corrupt_index(built, client, owner):
    gallery, images, vecs, build = built
    _corrupt_middle(_paths(build)[0])
    client.force_login(owner)
    response = client.get(reverse("image_similar", args=[images[0].pk]))
    assert response.status_code == 200
    response = client.get(reverse("api_similar", args=[images[0].pk]))
    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == _exact(gallery, vecs[0], exclude=images[0].pk, k=12)


@pytest.mark.integration
def test_the_queued_rebuild_heals_the_index(built, owner):
    live.require_redis()
    gallery, images, vecs, build = built
    _corrupt_middle(_paths(build)[0])
    search.similar_to_image(user=owner, image=images[0], k=5)  # notices, marks the gallery stale
    assert list(Gallery.objects.filter(index_dirty=True).values_list("pk", flat=True)) == [gallery.pk]
    new_version = tasks.rebuild_index.run(gallery.pk)
    assert new_version == build.version + 1
    gallery.refresh_from_db()
    assert not gallery.index_dirty
    new = gallery.current_build()
    got = search.similar_to_image(user=owner, image=images[0], k=10)
    assert [m.image.pk for m in got] == _exact(gallery, vecs[0], exclude=images[0].pk)
    assert cache.is_broken(gallery.pk, new.version) is None
    assert (gallery.pk, new.version) in cache.loaded_versions()  # served from the new index, not the fallback


def test_a_corrupt_index_cannot_crash_another_process(built, tmp_path):
    """Load the damaged version in a child process: it must exit cleanly, not segfault."""
    import subprocess
    import sys

    gallery, images, vecs, build = built
    _corrupt_middle(_paths(build)[0])
    code = (
        "import django, os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'imagesearch.settings'); django.setup()\n"
        "from django.conf import settings; settings.IMAGESEARCH_INDEX_DIR = sys.argv[1]\n"
        "from gallery.search import engine, store; import numpy as np\n"
        "ref = store.Ref(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))\n"
        "try:\n    engine.index_search(ref, np.ones(512, dtype=np.float32) / np.sqrt(512), 10)\n"
        "except store.IndexUnavailable as exc:\n    print('unavailable:', exc)\n"
    )
    args = [
        str(tmp_path / "index"),
        str(build.gallery_id),
        str(build.version),
        build.checksum,
        str(build.n_trees),
        str(build.item_count),
    ]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=live.ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "does not match its checksum" in proc.stdout


def test_a_version_verified_on_this_host_is_not_hashed_again_by_another_process(built, owner, monkeypatch):
    gallery, images, vecs, build = built
    calls = []
    real = store.checksum
    monkeypatch.setattr(store, "checksum", lambda paths: calls.append(1) or real(paths))
    cache.evict()  # as a freshly started web process
    assert len(search.similar_to_image(user=owner, image=images[0], k=5)) == 5
    assert calls == []  # the builder left the marker; sizes, mtimes and inodes still match
    _corrupt_middle(_paths(build)[2])  # rewriting a file invalidates the marker
    cache.evict()
    got = search.similar_to_image(user=owner, image=images[0], k=10)
    assert calls == [1] and cache.is_broken(gallery.pk, build.version)
    assert [m.image.pk for m in got] == _exact(gallery, vecs[0], exclude=images[0].pk)
