"""Every build measures how its own index answers and chooses how to query it:
exact where a scan is as fast, otherwise the narrowest search that reaches the
target recall on the gallery's own vectors; the choice and the recall are
recorded, and queries use them."""

import numpy as np
import pytest

from gallery.models import IndexBuild
from gallery.search import ann, calibration, engine, store
from tests import vectors

pytestmark = pytest.mark.django_db


def _built(gallery_id, vecs):
    ids = np.arange(1, len(vecs) + 1, dtype=np.int64)
    built = store.build(gallery_id, 1, ids, vecs, seed=1234)
    return ids, store.Ref(gallery_id, 1, built.checksum, built.n_trees, built.item_count)


def _true_neighbours(vecs, i, k=10):
    dist = 1.0 - vecs @ vecs[i]
    dist[i] = np.inf
    return np.sort(dist)[k - 1]


def test_a_small_gallery_is_searched_exactly_with_full_recall():
    vecs = vectors.clustered(300, seed=3)
    ids, ref = _built(31, vecs)
    fit = calibration.calibrate(ref, ids, vecs, target=0.99, seed=1)
    assert fit.exact
    assert fit.recall == 1.0
    assert fit.queries == 300
    # An exact version answers by scanning: the true nearest, ties by pk.
    exact_ref = store.Ref(31, 1, ref.checksum, ref.n_trees, ref.item_count, exact=True)
    pks, dist = engine.index_search(exact_ref, vecs[7], 10)
    want = np.lexsort((ids, (1.0 - vecs @ vecs[7]).astype(np.float32)))[:10]
    assert pks.tolist() == ids[want].tolist()
    assert np.all(np.diff(dist) >= 0)


def test_a_hard_gallery_widens_its_search_until_the_target_recall_holds_on_other_queries():
    # Wide, overlapping clusters: the first rung of the ladder finds too few of the true ten.
    vecs = vectors.clustered(4_000, seed=5, per_cluster=100, spread=3.0)
    ids, ref = _built(32, vecs)
    fit = calibration.calibrate(ref, ids, vecs, target=0.99, seed=1, allow_exact=False)
    assert not fit.exact
    assert fit.steps[0].recall < 0.99, fit.steps
    assert fit.recall >= 0.99
    assert fit.search_k > fit.steps[0].search_k
    # Measured again on items the calibration did not sample, through a Ref that carries the choice.
    chosen = store.Ref(32, 1, ref.checksum, ref.n_trees, ref.item_count, search_k=fit.search_k, pool=fit.pool)
    sampled = set(np.random.default_rng(1).choice(len(ids), size=calibration.SAMPLE_QUERIES, replace=False).tolist())
    others = [i for i in range(0, len(ids), 7) if i not in sampled][:200]
    recalls = []
    for i in others:
        pks, dist = engine.index_search(chosen, vecs[i], 11)
        dist = dist[pks != ids[i]][:10]
        recalls.append(np.count_nonzero(dist <= _true_neighbours(vecs, i) + calibration.TIE) / 10)
    assert np.mean(recalls) >= 0.98, np.mean(recalls)  # 200 fresh queries: the sampling error is about 0.005


def test_the_pair_and_nearest_distances_are_kept_for_the_bands():
    vecs = vectors.clustered(300, seed=6)
    ids, ref = _built(33, vecs)
    fit = calibration.calibrate(ref, ids, vecs, target=0.99, seed=1)
    assert len(fit.pair_distances) == 300 * 300 - 300  # every sampled item against every other, itself excluded
    assert np.all(np.diff(fit.pair_distances) >= 0)
    assert len(fit.nearest_distances) == 300
    brute = 1.0 - vecs @ vecs.T
    np.fill_diagonal(brute, np.inf)
    assert np.allclose(np.sort(fit.nearest_distances), np.sort(brute.min(axis=1)), atol=1e-5)


def test_the_build_records_its_calibration_and_queries_use_it(owner, monkeypatch):
    gallery, _images, _vecs, build = vectors.indexed_gallery(owner, "calibrated", n=2_000, seed=8)
    assert build.recall is not None and build.recall >= 0.99
    assert build.recall_queries == calibration.SAMPLE_QUERIES
    assert build.search_k >= 8 * build.pool > 0
    assert build.calibration_seconds > 0
    assert IndexBuild.objects.get(pk=build.pk).search_k == build.search_k

    # Forced onto the forest, a query asks Annoy for the calibrated pool and search_k.
    IndexBuild.objects.filter(pk=build.pk).update(exact=False)
    IndexBuild.forget_cached()
    gallery.refresh_from_db()
    asked = []
    real_query = ann.query

    def spy(forest, projected, pool, search_k):
        asked.append((pool, search_k))
        return real_query(forest, projected, pool, search_k)

    monkeypatch.setattr(ann, "query", spy)
    query = vectors.clustered(1, seed=99)[0]
    engine.search_vector(user=owner, gallery=gallery, vector=query, k=10)
    # With bands, a page is chosen from the nearest COUNT_DEPTH (and a quarter more for hidden rows):
    # a pool that wide, searched as hard as the calibration says for the page's 10 (and a quarter more).
    n = engine.COUNT_DEPTH + max(8, engine.COUNT_DEPTH // 4)
    want = (
        ann.pool_for(n, build.item_count, build.pool),
        ann.search_k_for(build.n_trees, 18, build.item_count, (build.search_k, build.pool)),
    )
    assert asked and asked[0] == want
    assert want[1] == build.search_k  # 18 results fit the calibrated pool: the calibrated search_k itself

    # Marked exact, the same query scans and asks Annoy nothing.
    IndexBuild.objects.filter(pk=build.pk).update(exact=True)
    IndexBuild.forget_cached()
    gallery.refresh_from_db()
    asked.clear()
    exact = engine.search_vector(user=owner, gallery=gallery, vector=query, k=10)
    assert asked == []
    assert len(exact) == 10


def test_a_wider_page_widens_the_calibrated_search_in_proportion():
    assert ann.pool_for(10, 100_000, 256) == 256
    assert ann.pool_for(300, 100_000, 256) == 600
    assert ann.search_k_for(32, 10, 100_000, (4_096, 256)) == 4_096
    assert ann.search_k_for(32, 300, 100_000, (4_096, 256)) == 4_096 * 600 // 256
    # A version built before calibration keeps the fixed rule.
    assert ann.search_k_for(32, 10, 100_000, (0, 0)) == ann.search_k_for(32, 10, 100_000)
