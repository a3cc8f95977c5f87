"""A new image is findable as soon as its embedding is stored: no rebuild needed."""

from datetime import timedelta

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gallery import search, selectors, services
from gallery.models import Gallery, Image, IndexBuild
from gallery.search import engine, store
from tests import imagegen, vectors

pytestmark = pytest.mark.django_db


def test_a_new_near_duplicate_is_found_first_before_any_rebuild(owner):
    gallery = services.gallery_create(owner=owner, title="Fresh")
    for seed in range(5):
        services.image_create(gallery=gallery, uploader=owner, data=imagegen.jpeg(seed), name=f"scene-{seed}.jpg")
    services.images_embed(image_ids=list(Image.objects.filter(gallery=gallery).values_list("pk", flat=True)))
    build = services.gallery_rebuild_index(gallery_id=gallery.pk)
    assert build.item_count == 5

    copy = imagegen.encode(imagegen.near_duplicate(imagegen.scene(2), 1))
    new = services.image_create(gallery=gallery, uploader=owner, data=copy, name="scene-2-copy.jpg").image
    services.images_embed(image_ids=[new.pk])  # the real model; no rebuild follows
    new.refresh_from_db()

    assert IndexBuild.objects.filter(gallery=gallery).count() == 1
    assert not engine.index_contains(store.ref_for(build), [new.pk]).any()
    original = Image.objects.get(gallery=gallery, original_name="scene-2.jpg")
    got = search.similar_to_image(user=owner, image=original, k=3)
    assert got[0].image.pk == new.pk
    assert got[0].distance < got[1].distance
    # Searching with the new image's own vector puts it first at distance ~0.
    first = search.search_vector(user=owner, gallery=gallery, vector=new.vector, k=1)[0]
    assert first.image.pk == new.pk and first.distance < 1e-5 and first.similarity > 99.99


def test_an_image_committed_just_before_the_snapshot_but_missing_from_the_index_is_found(owner):
    gallery = Gallery.objects.create(owner=owner, title="Late", slug="late")
    vecs = vectors.clustered(300, seed=5)
    vectors.add_images(gallery, vecs)
    build = services.gallery_rebuild_index(gallery_id=gallery.pk)
    # A worker whose transaction committed after the build read the table: its
    # embedded_at precedes the snapshot, yet the index does not hold it.
    late_vec = vecs[10] + 0.01 * vectors.clustered(1, seed=99)[0]
    late_vec /= np.linalg.norm(late_vec)
    [late] = vectors.add_images(gallery, [late_vec], prefix="late")
    Image.objects.filter(pk=late.pk).update(embedded_at=build.snapshot_at - timedelta(seconds=30))
    assert not engine.index_contains(store.ref_for(build), [late.pk]).any()

    got = search.search_vector(user=owner, gallery=gallery, vector=late_vec, k=2)
    assert got[0].image.pk == late.pk


def test_results_merge_index_and_delta_in_exact_distance_order(owner):
    gallery = Gallery.objects.create(owner=owner, title="Merge", slug="merge")
    vecs = vectors.clustered(600, seed=8, per_cluster=60)
    vectors.add_images(gallery, vecs[:500])
    services.gallery_rebuild_index(gallery_id=gallery.pk)
    vectors.add_images(gallery, vecs[500:], embedded_ago=timedelta(0), prefix="new")
    query = vecs[123]
    got = search.search_vector(user=owner, gallery=gallery, vector=query, k=20)
    exact = search.exact_search(gallery=gallery, vectors=query[None, :], k=20)[0]
    assert [m.image.pk for m in got] == exact
    assert any(m.image.original_name.startswith("new") for m in got)
    distances = [m.distance for m in got]
    assert distances == sorted(distances)
    assert np.allclose(
        distances, [1.0 - float(Image.objects.get(pk=m.image.pk).vector @ query) for m in got], atol=1e-6
    )


def test_pages_and_maximum_distance_cut_the_same_ranking(owner):
    gallery = Gallery.objects.create(owner=owner, title="Pages", slug="pages")
    vecs = vectors.clustered(500, seed=9)
    vectors.add_images(gallery, vecs)
    services.gallery_rebuild_index(gallery_id=gallery.pk)
    query = vecs[42]
    whole = search.search_vector(user=owner, gallery=gallery, vector=query, k=30)
    second = search.search_vector(user=owner, gallery=gallery, vector=query, k=10, offset=10)
    assert [m.image.pk for m in second] == [m.image.pk for m in whole[10:20]]
    assert [m.rank for m in second] == list(range(11, 21))
    limit = whole[7].distance
    near = search.search_vector(user=owner, gallery=gallery, vector=query, k=30, max_distance=limit)
    assert [m.image.pk for m in near] == [m.image.pk for m in whole[:8]]


def test_find_similar_takes_the_query_vector_from_the_index_unless_embedded_again(owner):
    gallery = Gallery.objects.create(owner=owner, title="Vec", slug="vec")
    vecs = vectors.clustered(300, seed=6, per_cluster=30)
    images = vectors.add_images(gallery, vecs)  # embedded an hour before the build
    services.gallery_rebuild_index(gallery_id=gallery.pk)

    image = selectors.image_for_view(user=owner, pk=images[40].pk)
    with CaptureQueriesContext(connection) as queries:
        got = search.similar_to_image(user=owner, image=image, k=5)
    assert not [q["sql"] for q in queries if '"embedding"' in q["sql"]]  # the 2 KB column was not read
    exact = search.exact_search(gallery=gallery, vectors=vecs[40][None, :], k=5, exclude_ids=[images[40].pk])[0]
    assert [m.image.pk for m in got] == exact

    # Embedded again since the build, with another vector: the row's vector is the query.
    Image.objects.filter(pk=images[40].pk).update(
        embedding=vecs[200].astype("<f4").tobytes(), embedded_at=timezone.now()
    )
    image = selectors.image_for_view(user=owner, pk=images[40].pk)
    with CaptureQueriesContext(connection) as queries:
        got = search.similar_to_image(user=owner, image=image, k=5)
    assert [q["sql"] for q in queries if '"embedding"' in q["sql"]]
    assert got[0].image.pk == images[200].pk and got[0].distance < 1e-5
