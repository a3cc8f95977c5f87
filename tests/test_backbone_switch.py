"""A switch of backbone never empties search: the gallery serves its build's version while the workers
fill next vectors of the new one, and one transaction flips it once every image has one.

Two fake backbones (tests.fake_backbone): A (512-wide) is the site's first, B (256-wide) the new one.
"""

import numpy as np
import pytest

from gallery import embedding, search, services
from gallery.embedding import backbones, imaging
from gallery.models import EmbeddingState, Gallery, Image, IndexBuild, TrashedImage
from gallery.search import queries
from tests import imagegen

A = "tests.fake_backbone.FakeBackbone"
B = "tests.fake_backbone.FakeBackboneB"
N = 8

pytestmark = pytest.mark.django_db


@pytest.fixture
def gallery(owner, settings, queued):
    settings.IMAGESEARCH_BACKBONE = A
    settings.IMAGESEARCH_EMBED_BATCH_SIZE = 1  # a task claims 4 images: the switch can stop half-way
    g = services.gallery_create(owner=owner, title="Switch")
    ids = [
        services.image_create(gallery=g, uploader=owner, data=imagegen.jpeg(seed), name=f"{seed}.jpg").image.pk
        for seed in range(N)
    ]
    for start in range(0, N, 4):
        services.images_embed(image_ids=ids[start : start + 4])
    services.gallery_rebuild_index(gallery_id=g.pk)
    return Gallery.objects.get(pk=g.pk)


def fresh(gallery):
    return Gallery.objects.get(pk=gallery.pk)


def outside_results(gallery, owner, seed):
    """Search the gallery with an outside picture, embedded in the version it serves."""
    g = fresh(gallery)
    query = queries.outside_vector(imagegen.jpeg(seed), version=embedding.served_version(g))
    return query, search.search_vector(user=owner, gallery=g, vector=query.vector, k=N + 4)


def switch_to_b(settings):
    version_a = embedding.version()
    settings.IMAGESEARCH_BACKBONE = B  # the operator's restart: every process forgets its model
    return version_a, embedding.version()


def test_search_answers_before_half_way_and_after_the_flip_in_the_right_version(gallery, owner, settings, queued):
    version_a, version_b = switch_to_b(settings)
    assert version_a != version_b and embedding.dim() == 256

    # Before any next vector: the gallery serves A, its search and outside queries still work.
    assert embedding.served_version(fresh(gallery)) == version_a
    query, matches = outside_results(gallery, owner, 3)
    assert query.version == version_a and query.vector.shape == (512,)
    assert matches[0].image.original_name == "3.jpg" and len(matches) == N

    # Beat's reconcile resets nothing and queues the switch's work.
    ids = list(Image.objects.order_by("pk").values_list("pk", flat=True))
    queued.clear()
    assert sorted(services.images_reconcile(broker_idle=True)) == ids
    assert Image.objects.filter(embedding_state=EmbeddingState.READY, embedding_version=version_a).count() == N

    # Half-way: 4 of 8 next vectors, the served vectors untouched, search unchanged.
    before = {pk: bytes(e) for pk, e in Image.objects.values_list("pk", "embedding")}
    services.images_embed(image_ids=ids[:4])
    coverage = services.switch_coverage(gallery=fresh(gallery))
    assert (coverage.covered, coverage.total, coverage.switching) == (4, N, True)
    assert {pk: bytes(e) for pk, e in Image.objects.values_list("pk", "embedding")} == before
    halfway = Image.objects.filter(next_embedding_version=version_b)
    assert sorted(halfway.values_list("pk", flat=True)) == ids[:4]
    assert all(len(bytes(v)) == 256 * 4 for v in halfway.values_list("next_embedding", flat=True))
    assert not services.switch_ready(gallery_id=gallery.pk)
    assert not services.index_is_stale(gallery_id=gallery.pk)
    query, matches = outside_results(gallery, owner, 5)
    assert query.version == version_a and matches[0].image.original_name == "5.jpg" and len(matches) == N
    # A rebuild asked meanwhile (the gallery changed) keeps serving A.
    Gallery.objects.filter(pk=gallery.pk).mark_index_stale()
    build = services.gallery_rebuild_index(gallery_id=gallery.pk)
    assert build.embedding_version == version_a and build.item_count == N

    # The rest: coverage complete, the rebuild flips.
    services.images_embed(image_ids=ids[4:])
    assert services.switch_ready(gallery_id=gallery.pk)
    assert services.galleries_ready_to_switch() == [gallery.pk]
    assert services.index_is_stale(gallery_id=gallery.pk)
    build = services.gallery_rebuild_index(gallery_id=gallery.pk)
    assert build.embedding_version == version_b and build.item_count == N
    assert fresh(gallery).current_index_id == build.pk
    assert IndexBuild.objects.filter(gallery=gallery, status=IndexBuild.Status.READY).get() == build
    images = Image.objects.all()
    assert all(i.embedding_version == version_b and i.next_embedding is None for i in images)
    assert all(i.next_embedding_version == "" and i.vector.shape == (256,) for i in images)
    assert all(i.embedded_at <= build.snapshot_at for i in images)  # in the build's files, not its delta
    query, matches = outside_results(gallery, owner, 6)
    assert query.version == version_b and query.vector.shape == (256,)
    assert matches[0].image.original_name == "6.jpg" and len(matches) == N
    similar = search.similar_to_image(user=owner, image=Image.objects.get(original_name="2.jpg"), k=3)
    assert len(similar) == 3


def test_the_flip_moves_exactly_the_next_vectors(gallery, owner, settings, queued):
    _version_a, version_b = switch_to_b(settings)
    ids = list(Image.objects.order_by("pk").values_list("pk", flat=True))
    for start in range(0, N, 4):
        services.images_embed(image_ids=ids[start : start + 4])
    nexts = {pk: bytes(v) for pk, v in Image.objects.values_list("pk", "next_embedding")}
    build = services.gallery_rebuild_index(gallery_id=gallery.pk)
    assert {pk: bytes(v) for pk, v in Image.objects.values_list("pk", "embedding")} == nexts
    # The index holds the same vectors: searching with an image's own vector finds it first.
    for image in Image.objects.all():
        first = search.search_vector(user=owner, gallery=fresh(gallery), vector=image.vector, k=1)[0]
        assert first.image.pk == image.pk and first.distance < 1e-4
    assert build.embedding_version == version_b


def test_a_new_upload_during_a_switch_gets_both_vectors_and_is_found_at_once(gallery, owner, settings, queued):
    version_a, version_b = switch_to_b(settings)
    new = services.image_create(gallery=gallery, uploader=owner, data=imagegen.jpeg(40), name="new.jpg").image
    services.images_embed(image_ids=[new.pk])
    new.refresh_from_db()
    assert new.embedding_state == EmbeddingState.READY
    assert new.embedding_version == version_a and new.vector.shape == (512,)
    assert new.next_embedding_version == version_b and len(bytes(new.next_embedding)) == 256 * 4
    query, matches = outside_results(gallery, owner, 40)
    assert query.version == version_a and matches[0].image.pk == new.pk  # from the old build's delta

    ids = list(Image.objects.exclude(pk=new.pk).order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), 4):
        services.images_embed(image_ids=ids[start : start + 4])
    services.gallery_rebuild_index(gallery_id=gallery.pk)
    new.refresh_from_db()
    assert new.embedding_version == version_b
    query, matches = outside_results(gallery, owner, 40)
    assert query.version == version_b and matches[0].image.pk == new.pk


def test_every_step_is_idempotent(gallery, owner, settings, queued):
    _version_a, version_b = switch_to_b(settings)
    ids = list(Image.objects.order_by("pk").values_list("pk", flat=True))
    services.images_embed(image_ids=ids[:4])
    first = {pk: bytes(v) for pk, v in Image.objects.filter(pk__in=ids[:4]).values_list("pk", "next_embedding")}
    services.images_embed(image_ids=ids[:4])  # a redelivery: nothing written again
    again = {pk: bytes(v) for pk, v in Image.objects.filter(pk__in=ids[:4]).values_list("pk", "next_embedding")}
    assert again == first
    assert Image.objects.filter(claim_token__isnull=False).count() == 0
    services.images_embed(image_ids=ids[4:])
    services.gallery_rebuild_index(gallery_id=gallery.pk)
    builds = IndexBuild.objects.count()
    snapshot = list(Image.objects.order_by("pk").values_list("embedding", "embedding_version", "embedded_at"))
    # Run everything again: no rebuild is due, no image is queued, nothing changes.
    assert not services.index_is_stale(gallery_id=gallery.pk)
    assert services.galleries_ready_to_switch() == []
    queued.clear()
    assert services.images_reconcile(broker_idle=True) == []
    services.images_embed(image_ids=ids)
    assert list(Image.objects.order_by("pk").values_list("embedding", "embedding_version", "embedded_at")) == snapshot
    assert IndexBuild.objects.count() == builds
    assert fresh(gallery).current_build().embedding_version == version_b


def test_a_trashed_image_restored_during_the_switch_is_searchable_and_queued_for_its_next_vector(
    gallery, owner, settings, queued, django_capture_on_commit_callbacks
):
    version_a, version_b = switch_to_b(settings)
    image = Image.objects.get(original_name="1.jpg")
    item = services.images_trash(images=[image], actor=owner)[0]
    queued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        restored = services.trash_restore(item=item).image
    assert restored.embedding_state == EmbeddingState.READY and restored.embedding_version == version_a
    assert [restored.pk] in queued  # its next vector (the trash keeps none)
    services.images_embed(image_ids=[restored.pk])
    restored.refresh_from_db()
    assert restored.next_embedding_version == version_b and restored.embedding_version == version_a


def test_a_trashed_image_restored_after_the_flip_is_embedded_again(
    gallery, owner, settings, queued, django_capture_on_commit_callbacks
):
    version_a, version_b = switch_to_b(settings)
    image = Image.objects.get(original_name="1.jpg")
    item = services.images_trash(images=[image], actor=owner)[0]
    assert TrashedImage.objects.get(pk=item.pk).embedding_version == version_a
    ids = list(Image.objects.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), 4):
        services.images_embed(image_ids=ids[start : start + 4])
    services.gallery_rebuild_index(gallery_id=gallery.pk)
    queued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        restored = services.trash_restore(item=TrashedImage.objects.get(pk=item.pk)).image
    assert restored.embedding_state == EmbeddingState.PENDING and queued == [[restored.pk]]
    services.images_embed(image_ids=[restored.pk])
    restored.refresh_from_db()
    assert restored.embedding_version == version_b and restored.vector.shape == (256,)


def test_an_image_outside_the_flip_build_lands_in_its_delta(gallery, owner, settings, queued, monkeypatch):
    """A next vector written between the flip's read and its commit moves too, dated after the build."""
    _version_a, version_b = switch_to_b(settings)
    ids = list(Image.objects.order_by("pk").values_list("pk", flat=True))
    for start in range(0, N, 4):
        services.images_embed(image_ids=ids[start : start + 4])
    late = services.image_create(gallery=gallery, uploader=owner, data=imagegen.jpeg(50), name="late.jpg").image
    from gallery.services import indexing

    real = indexing._searchable_vectors

    def read_then_upload(*args, **kwargs):
        out = real(*args, **kwargs)
        services.images_embed(image_ids=[late.pk])  # lands after the read, before the commit
        return out

    monkeypatch.setattr(indexing, "_searchable_vectors", read_then_upload)
    build = services.gallery_rebuild_index(gallery_id=gallery.pk)
    late.refresh_from_db()
    assert build.item_count == N and late.embedding_version == version_b
    assert late.embedded_at > build.snapshot_at and fresh(gallery).index_dirty
    query, matches = outside_results(gallery, owner, 50)
    assert matches[0].image.pk == late.pk


def test_the_registry_rebuilds_the_backbone_a_version_names(settings):
    settings.IMAGESEARCH_BACKBONE = A
    version_a = embedding.version()
    settings.IMAGESEARCH_BACKBONE = B
    old = backbones.for_version(version_a)
    assert type(old).__name__ == "FakeBackbone" and old.version_id() == version_a
    assert backbones.for_version(version_a) is old  # built once per process
    assert backbones.for_version(embedding.version()) is backbones.active()
    arr = imaging.model_input(imagegen.jpeg(1), 224)
    assert np.allclose(embedding.embed_batch_as(version_a, [arr]), old.embed_batch([arr]))
    with pytest.raises(backbones.WeightsUnavailable, match="No known backbone"):
        backbones.for_version("resnet9000-avgpool/imagenet")
    # A version made with a weights file the setting no longer names cannot be rebuilt.
    vgg = backbones.backbone_class("vgg16").pipeline_id
    with pytest.raises(backbones.WeightsUnavailable, match="no longer names"):
        backbones.for_version(f"{vgg}/file-0123456789abcdef")
    settings.IMAGESEARCH_RANDOM_SEED = 77
    assert backbones.for_version(f"{vgg}/random-seed5").seed == 5


def test_the_gallery_status_and_admin_page_show_the_switch_coverage(gallery, owner, staff, settings, queued, client):
    from gallery import selectors

    assert selectors.gallery_status(gallery=fresh(gallery))["switch"] is None
    version_a, version_b = switch_to_b(settings)
    ids = list(Image.objects.order_by("pk").values_list("pk", flat=True))
    services.images_embed(image_ids=ids[:4])
    switch = selectors.gallery_status(gallery=fresh(gallery))["switch"]
    assert (switch["covered"], switch["total"], switch["from"], switch["to"]) == (4, N, "fake", "fakeb")
    assert "from_version" not in switch  # the versions are staff's
    detailed = selectors.gallery_status(gallery=fresh(gallery), detailed=True)["switch"]
    assert (detailed["from_version"], detailed["to_version"]) == (version_a, version_b)
    assert switch["label"] == "Switching model: 4 of 8 re-embedded for fakeb"
    client.force_login(owner)
    body = client.get(f"/g/{gallery.slug}/status.json").json()
    assert body["switch"]["covered"] == 4
    client.force_login(staff)
    page = client.get(f"/admin/gallery/gallery/{gallery.pk}/change/").content.decode()
    assert "Switching model: 4 of 8 re-embedded for fakeb" in page
    services.images_embed(image_ids=ids[4:])
    services.gallery_rebuild_index(gallery_id=gallery.pk)
    assert selectors.gallery_status(gallery=fresh(gallery))["switch"] is None


@pytest.mark.parametrize("name", ["resnet50", "inceptionv3", "mobilenetv3"])
def test_system_checks_read_the_active_backbones_own_weights_setting(name, settings, tmp_path):
    from django.core.checks import run_checks

    setting = backbones.backbone_class(name).weights_setting
    settings.IMAGESEARCH_BACKBONE = name
    settings.DEBUG = False
    setattr(settings, setting, "none")
    warned = [m for m in run_checks() if m.id == "gallery.W002"]
    assert warned and warned[0].msg.startswith(f"{setting}=none")
    setattr(settings, setting, str(tmp_path / "gone.h5"))
    errors = [m for m in run_checks() if m.id == "gallery.E003"]
    assert errors and setting in errors[0].msg and "does not exist" in errors[0].msg
