"""Once the ladder reaches the target recall, the calibration keeps the narrowest
candidate pool that still reaches it at the chosen search_k: a narrower pool is
a subset of the same candidates, re-ranked for less."""

import numpy as np
import pytest

from gallery.search import calibration, store
from tests import vectors


def fake_index(vecs, ids, holds):
    """An index_search that answers exactly when holds(pool, search_k), else misses each query's nearest."""
    asked = []

    def index_search(ref, vector, n, search_k=None, *, pool=None, exact=None):
        dist = (1.0 - vecs @ vector).astype(np.float32)  # (N,)
        order = np.lexsort((ids, dist))
        if not exact:
            asked.append((pool, search_k))
            if not holds(pool, search_k):
                order = np.concatenate([order[:1], order[2:]])  # the query itself, then all but its nearest
        order = order[:n]
        return ids[order], dist[order]

    return index_search, asked


@pytest.fixture
def gallery(monkeypatch):
    monkeypatch.setattr(calibration, "SAMPLE_QUERIES", 100)  # the fake answers every query alike
    vecs = vectors.clustered(1_500, seed=11)  # more items than the ladder's widest pool here (1,024)
    ids = np.arange(1, len(vecs) + 1, dtype=np.int64)
    ref = store.Ref(41, 1, "0" * 64, 32, len(ids))
    return vecs, ids, ref


@pytest.mark.parametrize(("needed_pool", "chosen_pool"), [(0, 128), (256, 256), (512, 512)])
def test_the_pool_narrows_to_the_smallest_that_holds_the_target(monkeypatch, gallery, needed_pool, chosen_pool):
    vecs, ids, ref = gallery
    # Full recall from search_k 16,384 with a pool of at least needed_pool; the
    # ladder gets there with a pool of 1,024 (1,024/128, 2,048/128, 4,096/256, 8,192/512, 16,384/1,024).
    search, asked = fake_index(vecs, ids, lambda pool, search_k: search_k >= 16_384 and pool >= needed_pool)
    monkeypatch.setattr(calibration, "index_search", search)

    fit = calibration.calibrate(ref, ids, vecs, target=0.99, seed=1, allow_exact=False)

    assert (fit.search_k, fit.pool, fit.recall) == (16_384, chosen_pool, 1.0)
    ladder = [(s.pool, s.search_k) for s in fit.steps]
    assert ladder[:5] == [(128, 1_024), (128, 2_048), (256, 4_096), (512, 8_192), (1_024, 16_384)]
    # Bisection over the narrower pools at the chosen search_k: two more measurements, not three.
    assert [p for p, k in ladder[5:]] == {128: [256, 128], 256: [256, 128], 512: [256, 512]}[chosen_pool]
    assert all(k == 16_384 for _p, k in ladder[5:])
    assert set(asked) == set(ladder)


def test_nothing_narrows_when_the_target_is_not_reached(monkeypatch, gallery):
    vecs, ids, ref = gallery
    search, _asked = fake_index(vecs, ids, lambda pool, search_k: False)
    monkeypatch.setattr(calibration, "index_search", search)

    fit = calibration.calibrate(ref, ids, vecs, target=0.99, seed=1, allow_exact=False)

    assert fit.recall < 0.99
    searched = [(s.pool, s.search_k) for s in fit.steps]
    assert all(b[1] > a[1] for a, b in zip(searched, searched[1:], strict=False))  # the ladder alone, upwards


def test_a_first_rung_that_holds_is_kept_as_it_is(monkeypatch, gallery):
    vecs, ids, ref = gallery
    search, _asked = fake_index(vecs, ids, lambda pool, search_k: True)
    monkeypatch.setattr(calibration, "index_search", search)

    fit = calibration.calibrate(ref, ids, vecs, target=0.99, seed=1, allow_exact=False)

    assert [(s.pool, s.search_k) for s in fit.steps] == [(128, 1_024)]
    assert (fit.pool, fit.search_k) == (128, 1_024)
