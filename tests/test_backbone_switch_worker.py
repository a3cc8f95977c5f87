"""A real switch of backbone: a small gallery embedded and indexed by a real `celery worker` with VGG16
(random weights), then the site restarted on MobileNetV3 (random weights): the new worker builds the
next vectors beside the served ones and flips the gallery, and search answers at every step, from
real Annoy files, in the version the gallery serves."""

import pytest

from gallery import embedding, search, services
from gallery.models import EmbeddingState, Gallery, Image, IndexBuild
from gallery.search import queries, store
from tests import imagegen, live

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SEEDS = range(6)


def served_build(gallery):
    return Gallery.objects.get(pk=gallery.pk).current_build()


def answers(gallery, owner, n):
    """Search the gallery with one of its images: the copy's original first, n-1 results, never empty."""
    g = Gallery.objects.get(pk=gallery.pk)
    # One query for the image and its gallery: both as of the same moment, before or after a flip.
    image = Image.objects.select_related("gallery").get(gallery=g, original_name="scene-2.jpg")
    found = search.similar_to_image(user=owner, image=image, k=20)
    assert len(found) == n - 1, f"search answered {len(found)} of {n - 1} (served {embedding.served_version(g)})"
    return embedding.served_version(g)


def test_switching_vgg16_to_mobilenetv3_never_empties_search(owner, tmp_path, settings):
    live.require_redis()
    live.flush_broker()
    settings.IMAGESEARCH_BACKBONE = "vgg16"
    settings.IMAGESEARCH_QUERY_TIMEOUT_SECONDS = 120  # the query worker loads a model first
    gallery = services.gallery_create(owner=owner, title="Switching")
    for s in SEEDS:
        services.image_create(gallery=gallery, uploader=owner, data=imagegen.jpeg(s), name=f"scene-{s}.jpg")
    vgg = embedding.version()

    with live.Worker(tmp_path, name="vgg") as worker:
        live.wait_for(
            lambda: IndexBuild.objects.filter(gallery=gallery, status="ready", item_count=len(SEEDS)).first(),
            timeout=240,
            message="the VGG16 index",
            worker=worker,
        )
    assert answers(gallery, owner, len(SEEDS)) == vgg

    # The operator's restart on MobileNetV3; an upload arrives while no worker runs.
    settings.IMAGESEARCH_BACKBONE = "mobilenetv3"
    settings.IMAGESEARCH_MOBILENETV3_WEIGHTS = "none"
    mobilenet = embedding.version()
    assert mobilenet != vgg and mobilenet.startswith("mobilenetv3large-")
    late = services.image_create(gallery=gallery, uploader=owner, data=imagegen.jpeg(40), name="late.jpg").image
    assert answers(gallery, owner, len(SEEDS)) == vgg  # the switch has not emptied anything
    old_build = served_build(gallery)

    seen = []  # (served version, covered, total) at each look
    with live.Worker(
        tmp_path,
        name="mobilenet",
        IMAGESEARCH_BACKBONE="mobilenetv3",
        IMAGESEARCH_MOBILENETV3_WEIGHTS="none",
        IMAGESEARCH_EMBED_BATCH_SIZE="1",  # four images a task: the switch takes a few steps
    ) as worker:
        # An outside picture searched in the switching gallery is embedded by the query worker
        # with the version the gallery serves (VGG16), although MobileNetV3 is active there.
        query = queries.outside_vector(imagegen.jpeg(3), version=embedding.served_version(gallery))
        assert query.version == vgg and query.vector.shape == (512,)

        def flipped():
            g = Gallery.objects.get(pk=gallery.pk)
            coverage = services.switch_coverage(gallery=g)
            n = Image.objects.searchable().filter(gallery=g, embedding_version=coverage.served).count()
            served = answers(gallery, owner, n)
            assert n >= len(SEEDS), f"only {n} images searchable in {served}"
            seen.append((served, coverage.covered, coverage.total))
            return served == mobilenet

        live.wait_for(flipped, timeout=300, interval=0.3, message="the flip to MobileNetV3", worker=worker)
        build = served_build(gallery)
        after = queries.outside_vector(imagegen.jpeg(3), version=embedding.served_version(gallery))

    assert seen[0][0] == vgg and seen[-1][0] == mobilenet
    # Part-way states were searched too (the new upload gets both vectors first, the rest follow).
    assert any(version == vgg and 0 < covered < total for version, covered, total in seen)
    assert all(version in {vgg, mobilenet} for version, _, _ in seen)
    assert build.embedding_version == mobilenet and build.item_count == len(SEEDS) + 1
    images = list(Image.objects.filter(gallery=gallery))
    assert all(i.embedding_state == EmbeddingState.READY and i.embedding_version == mobilenet for i in images)
    assert all(i.vector.shape == (960,) and i.next_embedding is None for i in images)
    # The flip's files beside the previous ready build's (kept for readers still on it). Beat may
    # have rebuilt once more since the flip: a build keeps itself and its predecessor only.
    assert all(p.is_file() for p in store.local_paths(gallery.pk, build.version))
    newest = IndexBuild.objects.filter(gallery=gallery, status__in=["ready", "superseded"]).order_by("-version")
    predecessor = newest.filter(version__lt=newest[0].version).first()
    assert all(p.is_file() for p in store.local_paths(gallery.pk, newest[0].version))
    assert all(p.is_file() for p in store.local_paths(gallery.pk, predecessor.version))
    if newest[0].version == build.version:  # the flip's predecessor is the last VGG16 build
        assert predecessor.embedding_version == vgg and predecessor.version >= old_build.version
    assert answers(gallery, owner, len(SEEDS) + 1) == mobilenet
    assert after.version == mobilenet and after.vector.shape == (960,)
    first = search.search_vector(user=owner, gallery=Gallery.objects.get(pk=gallery.pk), vector=after.vector, k=1)
    assert first[0].image.original_name == "scene-3.jpg"
    late.refresh_from_db()
    assert late.embedding_version == mobilenet
