"""The 2-D map (layout, its task and file, the coordinates endpoint) and searches with several images."""

import importlib.util
import json

import numpy as np
import pytest
from django.urls import reverse

from gallery import search, services
from gallery.analysis import layout
from gallery.models import Gallery, Image, MapBuild, ModerationState
from gallery.search import multi, store
from tests import vectors

# --- Layout -------------------------------------------------------------------


def _stretched(n=2000, seed=0):
    """(n, 512) unit vectors spread 4x wider along one random direction than along a second, and little else."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((512, 3)))[0].T  # (3, 512) orthonormal
    coef = rng.standard_normal((n, 3)) * np.array([4.0, 1.0, 0.05])
    x = 5.0 * basis[2] + coef @ basis  # an offset keeps them off the origin, as real features are
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), basis


def test_pca_layout_is_normalised_deterministic_and_keeps_the_main_directions():
    x, _basis = _stretched()
    xy = layout.layout(x, "pca", seed=3)
    assert xy.shape == (2000, 2) and xy.dtype == np.float32
    span = xy.max(axis=0) - xy.min(axis=0)
    # The longer side spans [0, 1] exactly; the shorter one is centred and keeps its aspect.
    assert xy[:, 0].min() == pytest.approx(0.0, abs=1e-6) and xy[:, 0].max() == pytest.approx(1.0, abs=1e-6)
    assert 0.1 < span[1] < 0.8 and xy[:, 0].std() > 2 * xy[:, 1].std()  # x: the widest direction
    assert (xy[:, 1].min() + xy[:, 1].max()) / 2 == pytest.approx(0.5, abs=1e-6)
    assert np.array_equal(xy, layout.layout(x, "pca", seed=3))  # deterministic
    # Given the version's own projection, the same map as fitting one (the build fits it the same way).
    pca = store.projection.fit_projection(x, 3)
    assert np.allclose(layout.layout(x, "pca", seed=3, pca=pca), xy)


def test_normalise_handles_one_point_none_and_identical_points():
    assert layout.normalise(np.zeros((0, 2))).shape == (0, 2)
    assert np.array_equal(layout.normalise(np.ones((3, 2))), np.full((3, 2), 0.5, np.float32))
    out = layout.normalise(np.array([[2.0, 10.0], [4.0, 11.0]]))
    assert np.allclose(out, [[0.0, 0.25], [1.0, 0.75]])


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="t-SNE needs scikit-learn")
def test_tsne_layout_separates_clusters_and_places_the_rest_near_their_own(monkeypatch):
    monkeypatch.setattr(layout, "NONLINEAR_SAMPLE", 300)  # 300 fitted, 300 placed by their nearest fitted
    x = vectors.clustered(600, seed=2, per_cluster=200, spread=0.6)
    xy = layout.layout(x, "tsne", seed=1)
    assert xy.shape == (600, 2) and xy.min() >= 0 and xy.max() <= 1 + 1e-6
    # Each point's map neighbour lies in its own cluster (what the vectors' exact nearest neighbour says).
    sims = x @ x.T
    np.fill_diagonal(sims, -2)
    true_nn = sims.argmax(axis=1)
    d2 = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(d2, np.inf)
    map_nn = d2.argmin(axis=1)
    same = (np.abs(sims[np.arange(600), map_nn] - sims[np.arange(600), true_nn]) < 0.5).mean()
    assert same > 0.9


def test_an_unavailable_method_says_what_to_install(monkeypatch):
    monkeypatch.setattr(layout.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(layout.LayoutUnavailable, match="pip install umap-learn"):
        layout.layout(np.ones((10, 4), np.float32), "umap")
    assert "scikit-learn" in layout.unavailable_reason("tsne")
    assert layout.unavailable_reason("pca") is None
    assert "not one of" in layout.unavailable_reason("mds")


def test_the_file_round_trips_and_garbage_is_refused():
    ids = np.array([3, 9, 2**40], dtype=np.int64)
    xy = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], dtype=np.float32)
    data = layout.encode(ids, xy)
    assert len(data) == 16 + 3 * 16 and data[:5] == b"ISMAP"
    got_ids, got_xy = layout.decode(data)
    assert got_ids.tolist() == ids.tolist() and np.array_equal(got_xy, xy)
    for bad in (b"", b"x" * 16, data[:-1], b"NOTAMAP\x00" + data[8:]):
        with pytest.raises(layout.MapFileError):
            layout.decode(bad)


# --- The task -------------------------------------------------------------------


@pytest.fixture
def mapped(owner):
    gallery, images, vecs, build = vectors.indexed_gallery(owner, "mapped", n=300, seed=6, per_cluster=60)
    gallery.refresh_from_db()
    return gallery, images, vecs, gallery.current_build()


@pytest.mark.django_db
def test_a_build_is_mapped_once_into_its_file(mapped):
    gallery, images, _vecs, build = mapped
    record = services.gallery_build_map(gallery_id=gallery.pk, build_id=build.pk)
    assert record.status == MapBuild.Status.READY and record.method == "pca" and record.item_count == 300
    assert record.file == f"indexes/{gallery.pk}/v{build.version:06d}.map.bin" and record.size_bytes == 16 + 300 * 16
    ids, xy = layout.read(gallery.pk, build.version)
    assert ids.tolist() == sorted(i.pk for i in images)
    assert xy.min() >= 0 and xy.max() <= 1 + 1e-6
    assert services.gallery_build_map(gallery_id=gallery.pk, build_id=build.pk) == record  # safe to run twice
    assert MapBuild.objects.filter(build=build).count() == 1


@pytest.mark.django_db
def test_a_superseded_build_is_not_mapped_and_old_files_go_with_their_versions(mapped):
    gallery, _images, _vecs, build = mapped
    services.gallery_build_map(gallery_id=gallery.pk, build_id=build.pk)
    Gallery.objects.filter(pk=gallery.pk).update(index_dirty=True)
    newer = services.gallery_rebuild_index(gallery_id=gallery.pk)
    assert services.gallery_build_map(gallery_id=gallery.pk, build_id=build.pk) is None  # superseded
    assert MapBuild.objects.filter(build=newer).count() == 0
    assert services.gallery_build_map(gallery_id=gallery.pk, build_id=newer.pk).status == MapBuild.Status.READY
    Gallery.objects.filter(pk=gallery.pk).update(index_dirty=True)
    services.gallery_rebuild_index(gallery_id=gallery.pk)  # keeps this build and the previous one
    assert not layout.local_path(gallery.pk, build.version).exists()
    assert layout.local_path(gallery.pk, newer.version).exists()


@pytest.mark.django_db
def test_a_failed_layout_is_recorded_with_a_readable_error(mapped, settings, monkeypatch):
    gallery, _images, _vecs, build = mapped
    settings.IMAGESEARCH_MAP_METHOD = "umap"
    monkeypatch.setattr(layout.importlib.util, "find_spec", lambda name: None)
    record = services.gallery_build_map(gallery_id=gallery.pk, build_id=build.pk)
    assert record.status == MapBuild.Status.FAILED and record.method == "umap"
    assert "pip install umap-learn" in record.error and not record.file
    assert services.gallery_build_map(gallery_id=gallery.pk, build_id=build.pk) == record  # not retried per delivery


@pytest.mark.django_db
def test_unreadable_index_files_fail_the_map_not_the_worker(mapped):
    gallery, _images, _vecs, build = mapped
    for path in store.local_paths(gallery.pk, build.version):
        path.unlink()
    record = services.gallery_build_map(gallery_id=gallery.pk, build_id=build.pk)
    assert record.status == MapBuild.Status.FAILED and record.error.startswith("The index files could not be read")


@pytest.mark.django_db
def test_the_beat_sweep_queues_the_map_a_build_missed(mapped, monkeypatch):
    from gallery import jobs, tasks

    gallery, _images, _vecs, build = mapped
    sent = []
    monkeypatch.setattr(jobs, "publish_build_map", lambda g, b: sent.append((g, b)) or True)
    monkeypatch.setattr(jobs, "publish_find_duplicates", lambda g, b: True)
    tasks.rebuild_stale_indexes()
    assert sent == [(gallery.pk, build.pk)]
    tasks.build_map(gallery.pk, build.pk)
    sent.clear()
    tasks.rebuild_stale_indexes()
    assert sent == []


@pytest.mark.django_db
def test_every_rebuild_queues_its_map(owner, monkeypatch, settings):
    from gallery import jobs, tasks

    settings.CELERY_TASK_ALWAYS_EAGER = True  # the rebuild lock is a thread lock then: no Redis needed
    gallery = Gallery.objects.create(owner=owner, title="Queued", slug="queued")
    vectors.add_images(gallery, vectors.clustered(40, seed=1))
    sent = []
    monkeypatch.setattr(jobs, "publish_build_map", lambda g, b: sent.append((g, b)) or True)
    monkeypatch.setattr(jobs, "publish_find_duplicates", lambda g, b: True)
    Gallery.objects.filter(pk=gallery.pk).update(index_dirty=True)
    tasks.rebuild_index(gallery.pk)
    gallery.refresh_from_db()
    assert sent == [(gallery.pk, gallery.current_index_id)]


# --- The map page and its coordinates, per viewer -------------------------------


@pytest.fixture
def public_map(owner, settings):
    """A public gallery of 120 images: 100 approved, 10 pending (4 of them flagged), 5 rejected, 5 to be trashed."""
    gallery = Gallery.objects.create(owner=owner, title="Public map", slug="public-map", visibility="public")
    vecs = vectors.clustered(120, seed=9, per_cluster=40)
    approved = vectors.add_images(gallery, vecs[:100], prefix="a")
    pending = vectors.add_images(gallery, vecs[100:110], moderation=ModerationState.PENDING, prefix="p")
    rejected = vectors.add_images(gallery, vecs[110:115], moderation=ModerationState.REJECTED, prefix="r")
    trashed = vectors.add_images(gallery, vecs[115:], prefix="t")
    Image.objects.filter(pk__in=[i.pk for i in pending[:4]]).update(flagged=True)
    build = services.gallery_rebuild_index(gallery_id=gallery.pk)
    services.gallery_build_map(gallery_id=gallery.pk, build_id=build.pk)
    services.images_trash(images=list(Image.objects.filter(pk__in=[i.pk for i in trashed])), actor=owner)
    gallery.refresh_from_db()
    return gallery, {"approved": approved, "pending": pending, "rejected": rejected, "trashed": trashed}


def _points(client, gallery):
    response = client.get(reverse("gallery_map_points", args=[gallery.slug]))
    assert response.status_code == 200, response.content[:200]
    assert response["Content-Type"] == "application/octet-stream" and "no-store" in response["Cache-Control"]
    ids, _xy = layout.decode(response.content)
    return set(ids.tolist())


def _pks(images):
    return {i.pk for i in images}


@pytest.mark.django_db
@pytest.mark.parametrize("moderation", ["post", "pre"])
def test_the_coordinates_hold_only_what_each_viewer_may_see(client, public_map, other, staff, settings, moderation):
    settings.IMAGESEARCH_MODERATION = moderation
    gallery, images = public_map
    everything = _pks(images["approved"]) | _pks(images["pending"])  # never the rejected or the trashed
    stranger = _pks(images["approved"]) | (_pks(images["pending"][4:]) if moderation == "post" else set())
    assert _points(client, gallery) == stranger  # anonymous
    client.force_login(other)
    assert _points(client, gallery) == stranger
    client.force_login(staff)
    assert _points(client, gallery) == everything
    client.force_login(gallery.owner)
    assert _points(client, gallery) == everything


@pytest.mark.django_db
def test_a_private_gallery_map_is_404_for_strangers_and_names_only_visible_ones(client, mapped, other):
    gallery, images, _vecs, build = mapped
    services.gallery_build_map(gallery_id=gallery.pk, build_id=build.pk)
    for name in ("gallery_map", "gallery_map_points", "gallery_map_names"):
        assert client.get(reverse(name, args=[gallery.slug])).status_code == 404
    client.force_login(other)
    assert client.get(reverse("gallery_map_points", args=[gallery.slug])).status_code == 404
    client.force_login(gallery.owner)
    page = client.get(reverse("gallery_map", args=[gallery.slug]))
    assert page.status_code == 200 and b'id="map-canvas"' in page.content and b"map.js" in page.content
    url = reverse("gallery_map_names", args=[gallery.slug])
    names = client.get(url, {"ids": f"{images[0].pk},{images[1].pk},999999"}).json()["names"]
    assert names == {str(images[0].pk): images[0].original_name, str(images[1].pk): images[1].original_name}
    assert client.get(url, {"ids": "1,x"}).status_code == 400


@pytest.mark.django_db
def test_the_map_page_says_when_there_is_no_map_yet(client, owner, mapped):
    gallery, _images, _vecs, build = mapped
    client.force_login(owner)
    url = reverse("gallery_map", args=[gallery.slug])
    assert b"being laid out" in client.get(url).content  # the build is there, its map not yet
    assert client.get(reverse("gallery_map_points", args=[gallery.slug])).status_code == 404
    empty = Gallery.objects.create(owner=owner, title="Empty", slug="empty")
    assert b"after the gallery's first index build" in client.get(reverse("gallery_map", args=[empty.slug])).content
    services.gallery_build_map(gallery_id=gallery.pk, build_id=build.pk)
    Gallery.objects.filter(pk=gallery.pk).update(index_dirty=True)
    services.gallery_rebuild_index(gallery_id=gallery.pk)
    # A newer build without its map yet: the previous map is shown, and the page says a newer one is coming.
    body = client.get(url).content
    assert b"A newer map is being laid out" in body and b'id="map-canvas"' in body
    assert client.get(reverse("gallery_map_points", args=[gallery.slug])).status_code == 200


# --- Searches with several images ----------------------------------------------


def _exact(vecs, images, query, exclude, k):
    d = 1.0 - vecs @ query
    order = [i for i in np.lexsort((np.array([im.pk for im in images]), d)) if images[i].pk not in exclude]
    return [images[i].pk for i in order[:k]]


@pytest.mark.django_db
def test_the_query_is_rocchio_and_results_match_an_exact_search(owner, mapped):
    gallery, images, vecs, _build = mapped
    pos, neg = [images[0].pk, images[1].pk, images[7].pk], [images[100].pk]
    expected_q = vecs[[0, 1, 7]].mean(axis=0) - multi.NEGATIVE_WEIGHT * vecs[100]
    expected_q /= np.linalg.norm(expected_q)
    got_q = multi.query_vector(vecs[[0, 1, 7]], vecs[[100]])
    assert np.allclose(got_q, expected_q, atol=1e-6) and abs(np.linalg.norm(got_q) - 1) < 1e-6
    first = search.similar_to_images(user=owner, gallery=gallery, positives=pos, negatives=neg, k=12)
    assert [m.image.pk for m in first.matches] == _exact(vecs, images, got_q, set(pos + neg), 12)
    assert [m.rank for m in first.matches] == list(range(1, 13))
    second = search.similar_to_images(user=owner, gallery=gallery, positives=pos, negatives=neg, k=12, offset=12)
    assert [m.image.pk for m in second.matches] == _exact(vecs, images, got_q, set(pos + neg), 24)[12:]
    assert [m.rank for m in second.matches] == list(range(13, 25))


@pytest.mark.django_db
def test_negatives_push_their_neighbours_down(owner, mapped):
    gallery, images, vecs, _build = mapped
    # Two positives from two clusters: alone, results come from both; with one cluster's image as a
    # negative too, that cluster's images drop out of the top.
    centre = vecs @ vecs[0]
    same_as_0 = {images[i].pk for i in np.flatnonzero(centre > 0.3)}
    other = int(np.argmin(centre))
    pos = [images[0].pk, images[other].pk]
    before = search.similar_to_images(user=owner, gallery=gallery, positives=pos, k=20).matches
    neg_candidates = [images[i].pk for i in np.flatnonzero(centre > 0.3) if images[i].pk not in pos]
    after = search.similar_to_images(
        user=owner, gallery=gallery, positives=pos, negatives=neg_candidates[:3], k=20
    ).matches
    share_before = sum(m.image.pk in same_as_0 for m in before) / len(before)
    share_after = sum(m.image.pk in same_as_0 for m in after) / len(after)
    assert share_after < share_before


@pytest.mark.django_db
def test_hidden_and_foreign_ids_are_named_and_the_query_images_never_come_back(owner, other, public_map):
    gallery, images = public_map
    rejected, flagged = images["rejected"][0].pk, images["pending"][0].pk
    with pytest.raises(multi.QueryImagesError, match=f"may see: {rejected}") as err:
        search.similar_to_images(user=owner, gallery=gallery, positives=[images["approved"][0].pk, rejected])
    assert err.value.ids == [rejected]
    # A flagged pending image: the owner may search with it, a stranger may not (and is told which, like a missing one).
    ok = search.similar_to_images(user=owner, gallery=gallery, positives=[flagged], k=100)
    assert flagged not in {m.image.pk for m in ok.matches}
    with pytest.raises(multi.QueryImagesError, match=f"may see: {flagged}, 99999999"):
        search.similar_to_images(user=other, gallery=gallery, positives=[flagged], negatives=[99999999])
    results = search.similar_to_images(user=other, gallery=gallery, positives=[images["approved"][3].pk], k=100)
    hidden = _pks(images["pending"][:4]) | _pks(images["rejected"]) | _pks(images["trashed"])
    assert not hidden & {m.image.pk for m in results.matches}


@pytest.mark.django_db
def test_bad_query_ids_get_clear_errors(owner, mapped, settings):
    gallery, images, _vecs, _build = mapped
    settings.IMAGESEARCH_MAX_QUERY_IMAGES = 3
    cases = [
        ({"positives": []}, "at least one positive"),
        ({"positives": [images[0].pk], "negatives": [images[0].pk]}, "both positive and negative"),
        ({"positives": [i.pk for i in images[:4]]}, "at most 3"),
    ]
    for kwargs, message in cases:
        with pytest.raises(multi.QueryImagesError, match=message):
            search.similar_to_images(user=owner, gallery=gallery, **{"negatives": [], **kwargs})
    with pytest.raises(multi.QueryImagesError, match="not an image id"):
        multi.parse_ids("1,two", name="pos")
    assert multi.parse_ids(" 3, 1,3,", name="pos") == [3, 1]
    assert multi.parse_ids([4, "5"], name="positives") == [4, 5]


@pytest.mark.django_db
def test_the_results_page_shows_the_query_images_and_links_to_refine(client, owner, mapped):
    gallery, images, _vecs, _build = mapped
    client.force_login(owner)
    a, b, c = images[0].pk, images[1].pk, images[150].pk
    url = reverse("gallery_similar_many", args=[gallery.slug])
    assert url == f"/g/{gallery.slug}/similar/"
    response = client.get(url, {"pos": f"{a},{b}", "neg": str(c), "k": 6})
    assert response.status_code == 200
    body = response.content.decode()
    assert (
        body.count('class="multi-thumb multi-positive"') == 2 and body.count('class="multi-thumb multi-negative"') == 1
    )
    assert f"?pos={b}&amp;neg={c}&amp;k=6" in body  # remove a: the same search without it
    assert body.count('class="card result"') == 6
    first = response.context["matches"][0].image.pk
    assert f"?pos={a},{b}&amp;neg={c},{first}&amp;k=6" in body  # mark a result as a negative
    assert f"?pos={a},{b},{first}&amp;neg={c}&amp;k=6" in body  # or as a positive
    assert "&amp;pos=" in body and "page=2" in body  # the pager keeps the query images
    bad = client.get(url, {"pos": f"{a},99999999"})
    assert bad.status_code == 400 and "99999999" in bad.content.decode()
    assert client.get(url).status_code == 400  # no positives


@pytest.mark.django_db
def test_the_api_takes_get_and_json_post_and_answers_like_api_similar(client, owner, mapped):
    gallery, images, _vecs, _build = mapped
    client.force_login(owner)
    url = reverse("api_similar_many", args=[gallery.slug])
    a, b = images[0].pk, images[1].pk
    got = client.get(url, {"pos": f"{a},{b}", "k": 5}).json()
    assert got["positives"] == [a, b] and len(got["results"]) == 5
    assert set(got["results"][0]) >= {"rank", "id", "name", "distance", "band", "url", "thumbnail"}
    posted = client.post(url, json.dumps({"positives": [a, b], "k": 5}), content_type="application/json").json()
    assert [r["id"] for r in posted["results"]] == [r["id"] for r in got["results"]]
    errors = [
        client.get(url),
        client.get(url, {"pos": "x"}),
        client.get(url, {"pos": f"{a},99999999"}),
        client.get(url, {"pos": str(a), "k": 0}),
        client.post(url, "not json", content_type="application/json"),
        client.post(url, json.dumps({"positives": "1,2"}), content_type="application/json"),
        client.post(url, json.dumps({"positive": [a]}), content_type="application/json"),
    ]
    assert [r.status_code for r in errors] == [400] * len(errors)
    assert errors[2].json()["ids"] == [99999999]
    assert all(r.json()["error"] for r in errors)


def test_a_system_check_warns_when_the_map_method_cannot_run(settings, monkeypatch):
    from gallery import checks

    assert checks.map_method_available(None) == []
    settings.IMAGESEARCH_MAP_METHOD = "umap"
    monkeypatch.setattr(layout.importlib.util, "find_spec", lambda name: None)
    (warning,) = checks.map_method_available(None)
    assert warning.id == "gallery.W004" and "pip install umap-learn" in warning.msg


@pytest.mark.django_db
def test_a_band_keeps_that_band_or_closer_and_the_counts_leave_the_query_images_out(owner, mapped):
    from gallery.search import bands

    gallery, images, _vecs, _build = mapped
    pos = [images[0].pk, images[1].pk]
    full = search.similar_to_images(user=owner, gallery=gallery, positives=pos, k=100, counts=True)
    assert full.matches and all(m.band for m in full.matches)  # the build has fitted bands
    # Counted among the same nearest the page holds (100 of 298 others), less the two query images.
    assert full.counts["distant"] == len(full.matches) == 100
    for key in ("similar", "related"):
        shown = search.similar_to_images(user=owner, gallery=gallery, positives=pos, k=100, band=key).matches
        want = [m.image.pk for m in full.matches if bands.RANK[m.band] <= bands.RANK[key]]
        assert [m.image.pk for m in shown] == want[: len(shown)] and len(shown) == min(100, len(want))
        assert full.counts[key] == len(want)
    assert not {m.image.pk for m in full.matches} & set(pos)
