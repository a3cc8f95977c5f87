"""The backbone registry: IMAGESEARCH_BACKBONE names a short name or a dotted path, one instance per
process, and everything else reads the vector width and input size from it."""

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured

from gallery import embedding, jobs
from gallery.embedding import backbones
from gallery.embedding.backbones.vgg16 import VGG16
from tests import imagegen
from tests.fake_backbone import FakeBackbone


def test_a_short_name_and_a_dotted_path_both_name_a_backbone():
    assert backbones.backbone_class("vgg16") is VGG16
    assert backbones.backbone_class("tests.fake_backbone.FakeBackbone") is FakeBackbone


@pytest.mark.parametrize("name", ["resnet9000", "gallery.models.Image", "no.such.module.Thing"])
def test_anything_else_is_refused_with_the_known_names(name):
    with pytest.raises(ImproperlyConfigured, match="IMAGESEARCH_BACKBONE"):
        backbones.backbone_class(name)


def test_one_instance_per_process_until_the_setting_changes(settings):
    first = backbones.active()
    assert backbones.active() is first
    settings.IMAGESEARCH_RANDOM_SEED = 99  # a change of what the model is: a new instance
    assert backbones.active() is not first
    assert embedding.version().endswith("random-seed99")


def test_the_facade_reads_width_input_size_and_version_from_the_active_backbone(settings):
    settings.IMAGESEARCH_BACKBONE = "vgg16"
    assert (embedding.dim(), embedding.input_size()) == (512, 224)
    assert embedding.version().startswith(VGG16.pipeline_id + "/")  # no model is loaded to know this
    settings.IMAGESEARCH_BACKBONE = "tests.fake_backbone.FakeBackbone"
    assert embedding.version().startswith("fake-")


def test_the_fake_backbone_keeps_near_duplicates_near_and_other_scenes_far():
    from gallery.embedding import imaging

    scene = imagegen.scene(3)
    copy = imagegen.encode(imagegen.near_duplicate(scene, 1), "JPEG", quality=80)
    other = imagegen.jpeg(17)
    arrays = [imaging.model_input(d, 224) for d in (imagegen.encode(scene, "JPEG"), copy, other)]
    vectors = backbones.active().embed_batch(arrays)  # (3, 512)
    assert vectors.shape == (3, 512) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert 1 - vectors[0] @ vectors[1] < 1 - vectors[0] @ vectors[2]


def test_embed_tasks_are_sized_from_the_batch_setting(settings):
    settings.IMAGESEARCH_EMBED_BATCH_SIZE = 8
    assert jobs.task_size() == 32
