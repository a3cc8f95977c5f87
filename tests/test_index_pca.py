"""The index searches a PCA projection of the vectors and re-ranks a pool of
candidates exactly: the projection is reproducible, tiny galleries work, recall
holds, and a damaged, missing or pre-projection version is never used."""

import numpy as np
import pytest
from annoy import AnnoyIndex

from gallery import search, services
from gallery.search import ann, cache, engine, projection, store
from tests import vectors

pytestmark = pytest.mark.django_db


def _ref(built, gallery_id, version):
    return store.Ref(gallery_id, version, built.checksum, built.n_trees, built.item_count)


def _exact(vecs, ids, query, k):
    """Return (pks, distances) of the k nearest rows by cosine, ties by pk."""
    dist = (1.0 - vecs @ query).astype(np.float32)  # (N,)
    order = np.lexsort((ids, dist))[:k]
    return ids[order], dist[order]


def _corrupt_middle(path):
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(size // 2)
        fh.write(b"\xff" * 4096)


# --- The projection ---------------------------------------------------------------------


def test_the_same_inputs_and_seed_give_the_same_projection_and_answers(monkeypatch):
    monkeypatch.setattr(projection, "PCA_SAMPLE", 1_000)  # fit on a seeded sample, as a large gallery does
    vecs = vectors.clustered(3_000, seed=2)
    ids = np.arange(1, 3_001, dtype=np.int64)
    queries = vectors.clustered(20, seed=77)
    projections, answers = [], []
    for version in (1, 2):
        built = store.build(5, version, ids, vecs, seed=1234)
        projections.append(store.local_paths(5, version)[3].read_bytes())
        ref = _ref(built, 5, version)
        answers.append([engine.index_search(ref, q, 10)[0].tolist() for q in queries])
    assert projections[0] == projections[1]
    assert answers[0] == answers[1]
    store.build(5, 3, ids, vecs, seed=99)
    assert store.local_paths(5, 3)[3].read_bytes() != projections[0]  # another seed, another sample


def test_a_projection_is_the_mean_then_orthonormal_components_largest_first():
    vecs = vectors.clustered(2_000, seed=8)
    pca = projection.fit_projection(vecs, seed=0)
    assert pca.shape == (1 + projection.INDEX_DIM, 512) and pca.dtype == np.float32
    np.testing.assert_allclose(pca[0], vecs.mean(axis=0), atol=1e-6)
    components = pca[1:].astype(np.float64)  # (d, 512)
    np.testing.assert_allclose(components @ components.T, np.eye(projection.INDEX_DIM), atol=1e-5)
    variance = ((vecs - pca[0]) @ pca[1:].T).var(axis=0)  # (d,)
    assert np.all(np.diff(variance) <= 1e-6)


@pytest.mark.parametrize("count", [1, 2, 50])
def test_a_tiny_gallery_is_indexed_and_answers_exactly(count):
    vecs = vectors.clustered(count, seed=count)
    ids = np.arange(1, count + 1, dtype=np.int64) * 7
    built = store.build(3, 1, ids, vecs, seed=1)
    pca = np.load(store.local_paths(3, 1)[3])
    assert pca.shape == (1 + projection.INDEX_DIM, 512)
    # Past the rank of `count` points (count - 1) the components are zero rows.
    assert np.count_nonzero(np.abs(pca[1:]).sum(axis=1)) == count - 1
    ref = _ref(built, 3, 1)
    for i in range(count):
        pks, dist = engine.index_search(ref, vecs[i], 10)
        want_pks, want_dist = _exact(vecs, ids, vecs[i], 10)
        assert pks.tolist() == want_pks.tolist()
        np.testing.assert_allclose(dist, want_dist, atol=1e-6)
        assert pks[0] == ids[i]


def test_an_empty_sample_gives_a_zero_projection():
    assert not projection.fit_projection(np.zeros((0, 512), dtype=np.float32)).any()


# --- Search -------------------------------------------------------------------------------


def test_recall_at_10_against_exact_search_is_at_least_098():
    data = vectors.clustered(5_200, seed=11)  # one set of clusters: held-out queries from the same ones
    vecs, queries = data[:5_000], data[5_000:]
    ids = np.arange(1, 5_001, dtype=np.int64)
    built = store.build(4, 1, ids, vecs, seed=1234)
    ref = _ref(built, 4, 1)
    hits = []
    for q in queries:
        pks, dist = engine.index_search(ref, q, 10)
        want, _ = _exact(vecs, ids, q, 10)
        hits.append(len(set(pks.tolist()) & set(want.tolist())) / 10)
        np.testing.assert_allclose(dist, 1.0 - vecs[pks - 1] @ q, atol=1e-6)  # exact distances
        assert np.all(np.diff(dist) >= 0)
    assert np.mean(hits) >= 0.98, np.mean(hits)


def test_a_query_for_more_than_the_pool_returns_that_many_nearest_first():
    vecs = vectors.clustered(1_000, seed=6)
    ids = np.arange(1, 1_001, dtype=np.int64)
    built = store.build(6, 1, ids, vecs, seed=1)
    n = ann.POOL + 100
    pks, dist = engine.index_search(_ref(built, 6, 1), vecs[0], n)
    assert len(pks) == n and len(set(pks.tolist())) == n
    assert np.all(np.diff(dist) >= 0) and pks[0] == 1


def test_search_k_grows_with_the_gallery_and_the_pool_with_the_results_asked():
    assert ann.pool_for(10, 50) == 50
    assert ann.pool_for(42, 10_000) == ann.POOL
    assert ann.pool_for(500, 10_000) == 1_000
    ks = [ann.search_k_for(ann.n_trees_for(c), 42, c) for c in (10_000, 100_000, 1_000_000)]
    assert ks[0] >= ann.POOL and ks[0] <= ks[1] < ks[2]


# --- Unusable versions -------------------------------------------------------------------------


@pytest.fixture
def built(owner):
    return vectors.indexed_gallery(owner, "projected")


def _exact_page(gallery, vec, exclude, k=10):
    return search.exact_search(gallery=gallery, vectors=vec[None, :], k=k, exclude_ids=[exclude])[0]


def _damage(path, how):
    if how == "garbage":
        _corrupt_middle(path)
    elif how == "truncated":
        with open(path, "r+b") as fh:
            fh.truncate(path.stat().st_size - 2048)
    else:
        path.unlink()


@pytest.mark.parametrize("how", ["garbage", "truncated", "missing"])
@pytest.mark.parametrize("suffix", [".pca.npy", ".white.npy", ".hash.npy"])
def test_a_damaged_or_missing_projection_makes_the_version_unavailable(built, how, suffix):
    gallery, images, vecs, build = built
    _damage(store.local_paths(gallery.pk, build.version)[store.SUFFIXES.index(suffix)], how)
    cache.evict()
    with pytest.raises(store.IndexUnavailable):
        engine.index_search(_ref(build, gallery.pk, build.version), vecs[0], 10)


@pytest.mark.parametrize("how", ["garbage", "truncated", "missing"])
def test_search_falls_back_to_exact_without_a_usable_projection(built, owner, how):
    gallery, images, vecs, build = built
    _damage(store.local_paths(gallery.pk, build.version)[3], how)
    cache.evict()
    got = search.similar_to_image(user=owner, image=images[3], k=10)
    assert [m.image.pk for m in got] == _exact_page(gallery, vecs[3], images[3].pk)
    gallery.refresh_from_db()
    assert gallery.index_dirty
    assert cache.is_broken(gallery.pk, build.version)


def test_a_projection_missing_here_and_in_storage_is_unavailable(built, settings):
    settings.S3_BUCKET = "test-bucket"  # default storage stays the test's filesystem: nothing published yet
    gallery, images, vecs, build = built
    store.local_paths(gallery.pk, build.version)[3].unlink()
    cache.evict()
    with pytest.raises(store.IndexUnavailable, match="missing"):
        engine.index_search(_ref(build, gallery.pk, build.version), vecs[0], 10)


def _write_old_layout(gallery_id, version, ids, vecs):
    """Write a version as built before the projection: a 512-d angular forest, ids, vectors; return its checksum."""
    ann, ids_path, vec_path, pca_path, white_path, hash_path = store.local_paths(gallery_id, version)
    for path in (ann, pca_path, white_path, hash_path, ann.with_suffix(".verified")):
        path.unlink(missing_ok=True)
    forest = AnnoyIndex(512, "angular")  # the layout before gallery.search.ann
    for pos, vec in enumerate(vecs.tolist()):
        forest.add_item(pos, vec)
    forest.build(4, n_jobs=1)
    forest.save(str(ann))
    forest.unload()
    np.save(ids_path, ids)
    np.save(vec_path, vecs)
    return store.checksum((ann, ids_path, vec_path))


def test_a_version_built_before_the_projection_is_searched_exactly_and_rebuilt(built, owner):
    gallery, images, vecs, build = built
    ids = np.array([image.pk for image in images], dtype=np.int64)
    build.checksum = _write_old_layout(gallery.pk, build.version, ids, vecs)
    build.save(update_fields=["checksum"])
    cache.evict()
    with pytest.raises(store.IndexUnavailable):
        engine.index_search(_ref(build, gallery.pk, build.version), vecs[0], 10)
    cache.evict()
    got = search.similar_to_image(user=owner, image=images[5], k=10)
    assert [m.image.pk for m in got] == _exact_page(gallery, vecs[5], images[5].pk)
    gallery.refresh_from_db()
    assert gallery.index_dirty  # the rebuild is queued

    new = services.gallery_rebuild_index(gallery_id=gallery.pk)
    assert all(path.exists() for path in store.local_paths(gallery.pk, new.version))
    gallery.refresh_from_db()  # as the next request reads it: naming the new build
    got = search.similar_to_image(user=owner, image=images[5], k=10)
    assert [m.image.pk for m in got] == _exact_page(gallery, vecs[5], images[5].pk)
    assert (gallery.pk, new.version) in cache.loaded_versions()  # served by the new index


def test_every_file_of_a_superseded_version_is_removed(built):
    gallery, images, vecs, build = built
    services.gallery_rebuild_index(gallery_id=gallery.pk)
    third = services.gallery_rebuild_index(gallery_id=gallery.pk)
    left = sorted(p.name for p in store.local_dir(gallery.pk).iterdir())
    assert not [name for name in left if name.startswith(f"v{build.version:06d}")]
    assert f"v{third.version:06d}.pca.npy" in left
