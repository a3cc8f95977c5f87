"""The real ResNet50, InceptionV3 and MobileNetV3: width, input size, unit vectors, and the weights
policy VGG16 has ('none' = seeded random weights, a missing or broken file and ImageNet weights that
cannot be fetched = one readable WeightsUnavailable, never a stack trace). Nothing is downloaded: the
ImageNet case runs with an empty Keras cache and a download that fails at once."""

import numpy as np
import pytest

from gallery.embedding import backbones, imaging
from tests import imagegen

pytestmark = pytest.mark.model

SHAPES = {"resnet50": (2048, 224), "inceptionv3": (2048, 299), "mobilenetv3": (960, 224)}


@pytest.fixture(params=sorted(SHAPES))
def name(request):
    return request.param


def make(name, weights, seed=1234):
    return backbones.backbone_class(name)(weights=weights, seed=seed)


def test_none_weights_give_unit_vectors_of_the_backbones_width_reproducibly(name):
    dim, side = SHAPES[name]
    model = make(name, "none")
    assert (model.dim, model.input_size) == (dim, side)
    arrays = [imaging.model_input(imagegen.jpeg(s), side) for s in range(3)]
    vectors = model.embed_batch(arrays)  # (3, dim)
    assert vectors.shape == (3, dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    again = make(name, "none").embed_batch(arrays)
    assert np.allclose(vectors, again, atol=1e-5)
    assert model.version_id() == f"{model.pipeline_id}/random-seed1234"
    # A near-duplicate lands nearer than another picture, even with random weights.
    scene = imagegen.scene(3)
    pair = [imagegen.encode(scene, "JPEG"), imagegen.encode(imagegen.near_duplicate(scene, 1), "JPEG", quality=80)]
    a, b, other = model.embed_batch([imaging.model_input(d, side) for d in [*pair, imagegen.jpeg(17)]])
    assert a @ b > a @ other


def test_a_missing_weights_file_is_a_readable_error_naming_the_file(name, tmp_path):
    missing = tmp_path / "gone.h5"
    with pytest.raises(backbones.WeightsUnavailable) as caught:
        make(name, str(missing)).load()
    assert str(missing) in str(caught.value) and "does not exist" in str(caught.value)


def test_a_broken_weights_file_is_a_readable_error(name, tmp_path):
    bad = tmp_path / "weights.h5"
    bad.write_bytes(b"this is not an HDF5 file")
    with pytest.raises(backbones.WeightsUnavailable) as caught:
        make(name, str(bad)).load()
    message = str(caught.value)
    assert "could not be loaded" in message and str(bad) in message and "Traceback" not in message


def test_imagenet_weights_that_cannot_be_fetched_say_which_file_to_set(name, tmp_path, monkeypatch):
    from keras.src.backend import config
    from keras.src.utils import file_utils

    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path / "keras"))  # an empty cache: nothing to reuse
    fetched = []

    def offline(url, *args, **kwargs):
        fetched.append(url)
        raise OSError("network is unreachable")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    model = make(name, "imagenet")
    with pytest.raises(backbones.WeightsUnavailable) as caught:
        model.load()
    message = str(caught.value)
    assert fetched, "the weights were looked for in the empty cache, then asked of the network"
    assert "could not be downloaded" in message and model.weights_setting in message
    assert model.weights_file_hint in message and "'none'" in message
    assert not list((tmp_path / "keras").rglob("*.h5"))
