"""Embedding is safe under redelivery: a claim is a conditional UPDATE with a token, so
two deliveries (or two workers) embed an image once; bad files are results, storage
trouble is a retry; vectors of another model version are embedded again and never
indexed together with current ones. Unit tests: task bodies called directly, the real
VGG16 with seeded random weights."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from gallery import embedding, services
from gallery.embedding import pipeline
from gallery.models import EmbeddingState, Image
from tests import imagegen

pytestmark = pytest.mark.django_db


@pytest.fixture
def gallery(owner):
    return services.gallery_create(owner=owner, title="Claims")


def add(gallery, owner, seeds):
    return [
        services.image_create(gallery=gallery, uploader=owner, data=imagegen.jpeg(s), name=f"s{s}.jpg").image.pk
        for s in seeds
    ]


def test_a_task_delivered_twice_embeds_each_image_once(gallery, owner, queued):
    ids = add(gallery, owner, range(3))
    assert services.images_embed(image_ids=ids) == 3
    first = {img.pk: (img.embedded_at, bytes(img.embedding)) for img in Image.objects.all()}

    assert services.images_embed(image_ids=ids) == 0

    for img in Image.objects.all():
        assert img.embedding_state == EmbeddingState.READY
        assert img.attempts == 1
        assert (img.embedded_at, bytes(img.embedding)) == first[img.pk]
        assert img.claim_token is None


def test_two_claimers_of_one_image_only_one_gets_it(gallery, owner, queued):
    (pk,) = add(gallery, owner, [0])
    token_a, claimed_a = pipeline.claim([pk])
    token_b, claimed_b = pipeline.claim([pk])
    assert [img.pk for img in claimed_a] == [pk]
    assert claimed_b == []
    image = Image.objects.get(pk=pk)
    assert image.embedding_state == EmbeddingState.PROCESSING and image.claim_token == token_a


def test_a_worker_whose_claim_was_taken_over_writes_nothing(gallery, owner, queued, monkeypatch, settings):
    """Worker A stalls past the stuck timeout; B takes the image over and stores it;
    A's late result is dropped by the token check, so the image is written once."""
    (pk,) = add(gallery, owner, [0])
    real = embedding.embed_batch
    results = {}

    def a_stalls_while_b_runs(arrays):
        monkeypatch.setattr(embedding, "embed_batch", real)  # B runs the real model
        past = timezone.now() - timedelta(seconds=settings.IMAGESEARCH_STUCK_AFTER_SECONDS + 1)
        Image.objects.filter(pk=pk).update(claimed_at=past)
        results["b"] = services.images_embed(image_ids=[pk])
        return real(arrays)

    monkeypatch.setattr(embedding, "embed_batch", a_stalls_while_b_runs)
    results["a"] = services.images_embed(image_ids=[pk])

    assert results == {"a": 0, "b": 1}
    image = Image.objects.get(pk=pk)
    assert image.embedding_state == EmbeddingState.READY and image.claim_token is None
    assert image.attempts == 2  # claimed twice, written once


def test_a_task_fills_its_batch_with_other_pending_images_of_the_same_gallery(gallery, owner, queued, make_user):
    ids = add(gallery, owner, range(5))
    stranger = make_user("stranger")
    elsewhere = services.gallery_create(owner=stranger, title="Elsewhere")
    (other_pk,) = add(elsewhere, stranger, [9])

    assert services.images_embed(image_ids=[ids[0]]) == 5

    assert set(Image.objects.filter(embedding_state=EmbeddingState.READY).values_list("pk", flat=True)) == set(ids)
    assert Image.objects.get(pk=other_pk).embedding_state == EmbeddingState.PENDING
    # The other images' own tasks then find nothing to do.
    assert services.images_embed(image_ids=ids[1:2]) == 0


def test_a_batch_gives_each_image_the_vector_it_gets_alone(gallery, owner, queued, settings):
    settings.IMAGESEARCH_EMBED_BATCH_SIZE = 4  # 3 images: padded to a batch of 4
    ids = add(gallery, owner, range(3))
    services.images_embed(image_ids=ids)
    together = {img.pk: img.vector for img in Image.objects.all()}
    services.images_reembed(images=Image.objects.filter(pk=ids[1]))
    assert services.images_embed(image_ids=[ids[1]]) == 1  # the only pending image: a batch of 1
    alone = Image.objects.get(pk=ids[1]).vector
    assert float(together[ids[1]] @ alone) > 1 - 1e-5


def test_a_damaged_file_is_a_failed_result_with_a_reason_and_the_rest_are_embedded(gallery, owner, queued):
    ids = add(gallery, owner, range(3))
    damaged = Image.objects.get(pk=ids[1])
    with damaged.file.open("wb") as fh:
        fh.write(imagegen.jpeg(1)[:300])  # truncated after upload (disk corruption)

    assert services.images_embed(image_ids=ids) == 2

    damaged.refresh_from_db()
    assert damaged.embedding_state == EmbeddingState.FAILED
    assert "decoded" in damaged.embedding_error or "truncated" in damaged.embedding_error
    assert damaged.claim_token is None
    assert Image.objects.filter(embedding_state=EmbeddingState.READY).count() == 2


def test_a_file_missing_from_storage_fails_with_a_reason_instead_of_retrying_forever(gallery, owner, queued):
    (pk,) = add(gallery, owner, [0])
    image = Image.objects.get(pk=pk)
    image.file.storage.delete(image.file.name)

    assert services.images_embed(image_ids=[pk]) == 0

    image.refresh_from_db()
    assert image.embedding_state == EmbeddingState.FAILED
    assert "missing" in image.embedding_error


def test_storage_trouble_releases_the_claim_and_raises_for_a_retry(gallery, owner, queued, monkeypatch):
    ids = add(gallery, owner, range(2))

    def unreachable(image):
        raise ConnectionResetError("storage connection reset")

    monkeypatch.setattr(pipeline, "decode", unreachable)
    with pytest.raises(OSError):
        services.images_embed(image_ids=ids)

    for image in Image.objects.all():
        assert image.embedding_state == EmbeddingState.PENDING
        assert image.claim_token is None


def test_the_reconciler_resets_stale_claims_and_queues_pending_images_only_when_the_queue_is_idle(
    gallery, owner, queued, settings
):
    ids = add(gallery, owner, range(3))
    queued.clear()
    pipeline.claim(ids[:1])  # a worker claimed this one, then died
    past = timezone.now() - timedelta(seconds=settings.IMAGESEARCH_STUCK_AFTER_SECONDS + 5)
    Image.objects.filter(pk=ids[0]).update(claimed_at=past)
    pipeline.claim(ids[1:2])  # a live claim: left alone

    assert services.images_reconcile(broker_idle=False) == []
    assert Image.objects.get(pk=ids[0]).embedding_state == EmbeddingState.PENDING
    assert Image.objects.get(pk=ids[1]).embedding_state == EmbeddingState.PROCESSING
    assert queued == []

    assert services.images_reconcile(broker_idle=True) == [ids[0], ids[2]]
    assert queued == [[ids[0], ids[2]]]


def test_changing_the_model_version_embeds_every_image_again_in_the_background(gallery, owner, queued, settings):
    ids = add(gallery, owner, range(3))
    services.images_embed(image_ids=ids)
    old_version = embedding.version()
    old_vectors = {img.pk: img.vector for img in Image.objects.all()}
    queued.clear()

    settings.IMAGESEARCH_RANDOM_SEED = settings.IMAGESEARCH_RANDOM_SEED + 1  # another model
    new_version = embedding.version()
    assert new_version != old_version

    assert sorted(services.images_reconcile(broker_idle=True)) == sorted(ids)
    assert sorted(pk for batch in queued for pk in batch) == sorted(ids)
    assert services.images_embed(image_ids=ids) == 3
    for img in Image.objects.all():
        assert img.embedding_version == new_version and img.embedding_state == EmbeddingState.READY
        assert not np.allclose(img.vector, old_vectors[img.pk])
    # Nothing left to redo once every vector is current.
    assert services.images_reconcile(broker_idle=True) == []


def test_an_index_is_never_built_from_vectors_of_mixed_versions(gallery, owner, queued):
    ids = add(gallery, owner, range(4))
    services.images_embed(image_ids=ids)
    Image.objects.filter(pk=ids[0]).update(embedding_version="vgg16-avgpool-l2/some-older-model")

    build = services.gallery_rebuild_index(gallery_id=gallery.pk)

    assert build.embedding_version == embedding.version()
    assert build.item_count == 3
