"""Rejected, deleted and hidden images never appear in a result, from the
moment of the change, although they stay in the index until the next rebuild."""

import numpy as np
import pytest

from gallery import search, services
from gallery.models import Gallery, ModerationState, Visibility
from gallery.search import engine, store
from tests import vectors

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(owner):
    gallery = Gallery.objects.create(owner=owner, title="Tombs", slug="tombs", visibility=Visibility.PUBLIC)
    vecs = vectors.clustered(400, seed=3, per_cluster=40)
    images = vectors.add_images(gallery, vecs)
    build = services.gallery_rebuild_index(gallery_id=gallery.pk)
    return gallery, images, vecs, build


def _nearest(vecs, i, k):
    dist = 1.0 - vecs @ vecs[i]  # (N,)
    order = [int(j) for j in np.argsort(dist) if j != i]
    return order[:k]


def test_a_rejected_image_leaves_every_result_at_once(world, owner, other, staff):
    gallery, images, vecs, build = world
    first = _nearest(vecs, 0, 1)[0]
    for user in (owner, other, staff):
        assert search.similar_to_image(user=user, image=images[0], k=5)[0].image.pk == images[first].pk
    services.image_moderate(image=images[first], actor=staff, state=ModerationState.REJECTED, reason="spam")
    assert engine.index_contains(store.ref_for(build), [images[first].pk]).all()  # still in the index: no rebuild ran
    for user in (owner, other, staff):
        got = [m.image.pk for m in search.similar_to_image(user=user, image=images[0], k=10)]
        assert images[first].pk not in got and len(got) == 10


def test_a_deleted_image_is_never_returned(world, owner):
    gallery, images, vecs, build = world
    first = _nearest(vecs, 5, 1)[0]
    gone = images[first].pk
    services.image_delete(image=images[first])
    got = [m.image.pk for m in search.similar_to_image(user=owner, image=images[5], k=10)]
    assert gone not in got and len(got) == 10
    got = [m.image.pk for m in search.search_vector(user=owner, gallery=gallery, vector=vecs[first], k=10)]
    assert gone not in got


def test_images_hidden_from_a_visitor_are_filtered_per_viewer(world, owner, other, settings):
    gallery, images, vecs, build = world
    settings.IMAGESEARCH_MODERATION = "pre"
    near = _nearest(vecs, 7, 3)
    from gallery.models import Image

    Image.objects.filter(pk__in=[images[j].pk for j in near]).update(moderation_state=ModerationState.PENDING)
    hidden = {images[j].pk for j in near}
    assert not hidden & {m.image.pk for m in search.similar_to_image(user=other, image=images[7], k=10)}
    # The owner still sees their own pending images.
    assert hidden <= {m.image.pk for m in search.similar_to_image(user=owner, image=images[7], k=10)}


def test_many_rejected_neighbours_do_not_shrink_the_result(world, owner, staff):
    gallery, images, vecs, build = world
    from gallery.models import Image

    crowd = _nearest(vecs, 11, 60)  # more than the first batch of index candidates
    Image.objects.filter(pk__in=[images[j].pk for j in crowd]).update(moderation_state=ModerationState.REJECTED)
    got = search.similar_to_image(user=owner, image=images[11], k=12)
    expected = [images[j].pk for j in _nearest(vecs, 11, 72)[60:72]]
    assert [m.image.pk for m in got] == expected


def test_a_private_gallery_gives_strangers_nothing(world, other, owner):
    gallery, images, vecs, build = world
    Gallery.objects.filter(pk=gallery.pk).update(visibility=Visibility.PRIVATE)
    gallery.refresh_from_db()
    assert search.search_vector(user=other, gallery=gallery, vector=vecs[0], k=10) == []
    assert len(search.search_vector(user=owner, gallery=gallery, vector=vecs[0], k=10)) == 10
