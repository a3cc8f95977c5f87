"""The real VGG16: shapes, unit vectors, reproducible random weights, and a clear
error (never a stack trace, never a lost image) when weights cannot be loaded."""

import numpy as np
import pytest

from gallery import embedding, services
from gallery.embedding import imaging
from gallery.models import EmbeddingState, Image, SystemNotice
from tests import imagegen

pytestmark = pytest.mark.model


def test_vectors_are_512_d_unit_length_and_reproducible():
    arrays = [imaging.model_input(size=224, data=imagegen.jpeg(s)) for s in range(3)]
    first = embedding.embed_batch(arrays)
    assert first.shape == (3, 512) and first.dtype == np.float32
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    embedding.reset()
    again = embedding.embed_batch(arrays)
    assert np.allclose(first, again, atol=1e-5)


def test_a_batch_gives_the_same_vectors_as_one_image_at_a_time():
    arrays = [imaging.model_input(size=224, data=imagegen.jpeg(s)) for s in range(3)]
    together = embedding.embed_batch(arrays)
    alone = np.stack([embedding.embed_batch([a])[0] for a in arrays])
    assert np.allclose(together, alone, atol=1e-4)


def test_the_version_names_the_backbone_and_the_weights(settings):
    assert embedding.version().startswith("vgg16-avgpool-l2/")
    assert embedding.version().endswith(f"random-seed{settings.IMAGESEARCH_RANDOM_SEED}")


@pytest.mark.django_db
def test_unloadable_weights_leave_images_pending_with_a_readable_notice(settings, tmp_path, owner):
    bad = tmp_path / "weights.h5"
    bad.write_bytes(b"this is not an HDF5 file")
    settings.IMAGESEARCH_VGG16_WEIGHTS = str(bad)
    gallery = services.gallery_create(owner=owner, title="G")
    result = services.image_create(gallery=gallery, uploader=owner, data=imagegen.jpeg(1), name="a.jpg")

    assert services.images_embed(image_ids=[result.image.pk]) == 0

    image = Image.objects.get()
    assert image.embedding_state == EmbeddingState.PENDING
    notice = SystemNotice.objects.get(key=SystemNotice.WEIGHTS).message
    assert str(bad) in notice and "could not be loaded" in notice
    assert "Traceback" not in notice
