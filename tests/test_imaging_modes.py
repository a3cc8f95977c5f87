"""Decoding to model input: every Pillow mode becomes the RGB a person sees (transparency
on white), EXIF orientation is applied, and JPEG draft decoding changes nothing that matters."""

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from gallery import embedding
from gallery.embedding import imaging
from tests import imagegen


def encode(img, fmt, **kwargs):
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def left_right(mode, left, right, size=(64, 32)):
    """An image whose left half is `left` and right half `right` (values in `mode`)."""
    img = PILImage.new(mode, size, left)
    img.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return img


def halves(arr):
    """Return the mean RGB of the left and right quarters' centres of a (224, 224, 3) input."""
    assert arr.shape == (224, 224, 3) and arr.dtype == np.float32
    return arr[80:144, 20:90].mean(axis=(0, 1)), arr[80:144, 134:204].mean(axis=(0, 1))


def test_rgba_is_composited_on_white():
    img = left_right("RGBA", (255, 0, 0, 0), (0, 0, 255, 255))  # invisible red | opaque blue
    left, right = halves(imaging.model_input(size=224, data=encode(img, "PNG")))
    assert np.allclose(left, [255, 255, 255], atol=1)
    assert np.allclose(right, [0, 0, 255], atol=1)


def test_half_transparent_rgba_blends_with_white():
    img = PILImage.new("RGBA", (32, 32), (0, 0, 0, 128))
    arr = imaging.model_input(size=224, data=encode(img, "PNG"))
    assert np.allclose(arr[100:120, 100:120].mean(axis=(0, 1)), [127, 127, 127], atol=2)


def test_palette_with_a_transparent_index_shows_white_there():
    img = left_right("P", 0, 1)
    img.putpalette([200, 0, 0, 0, 160, 0] + [0] * 762)
    data = encode(img, "PNG", transparency=0)  # index 0 (red) is transparent
    left, right = halves(imaging.model_input(size=224, data=data))
    assert np.allclose(left, [255, 255, 255], atol=1)
    assert np.allclose(right, [0, 160, 0], atol=1)


def test_palette_gif_without_transparency_keeps_its_colours():
    img = left_right("P", 0, 1)
    img.putpalette([10, 20, 30, 240, 200, 10] + [0] * 762)
    left, right = halves(imaging.model_input(size=224, data=encode(img, "GIF")))
    assert np.allclose(left, [10, 20, 30], atol=1)
    assert np.allclose(right, [240, 200, 10], atol=1)


def test_grey_with_alpha_is_composited_on_white():
    img = left_right("LA", (90, 0), (90, 255))
    left, right = halves(imaging.model_input(size=224, data=encode(img, "PNG")))
    assert np.allclose(left, [255, 255, 255], atol=1)
    assert np.allclose(right, [90, 90, 90], atol=1)


def test_16_bit_grey_is_scaled_not_clipped():
    pixels = np.full((32, 64), 65535, dtype=np.uint16)  # (H, W)
    pixels[:, 32:] = 32768
    data = encode(PILImage.fromarray(pixels), "PNG")  # uint16 -> mode I;16
    with PILImage.open(io.BytesIO(data)) as check:
        assert check.mode in {"I;16", "I"}  # really a 16-bit file
    left, right = halves(imaging.model_input(size=224, data=data))
    assert np.allclose(left, [255, 255, 255], atol=1)
    assert np.allclose(right, [127.5, 127.5, 127.5], atol=1.5)  # clipping would give 255


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_becomes_the_rgb_it_prints_as(fmt):
    img = left_right("CMYK", (255, 0, 0, 0), (0, 0, 0, 255))  # cyan | black
    left, right = halves(imaging.model_input(size=224, data=encode(img, fmt)))
    assert np.allclose(left, [0, 255, 255], atol=6)
    assert np.allclose(right, [0, 0, 0], atol=6)


@pytest.mark.parametrize("mode,value", [("L", 77), ("1", 255)])
def test_grey_and_bilevel_images_become_three_equal_channels(mode, value):
    arr = imaging.model_input(size=224, data=encode(PILImage.new(mode, (40, 30), value), "PNG"))
    assert np.allclose(arr, value if mode == "L" else 255, atol=0.5)


def test_the_input_is_always_224_square_float32_in_0_255():
    arr = imaging.model_input(size=224, data=imagegen.jpeg(1, size=(500, 120)))
    assert arr.shape == (224, 224, 3) and arr.dtype == np.float32
    assert 0 <= arr.min() and arr.max() <= 255


def with_orientation(img, orientation, fmt="JPEG"):
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    return encode(img, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))


@pytest.mark.parametrize(
    "orientation,top,bottom",
    [
        (6, "red", "blue"),  # stored lying on its side: rotate 90 degrees clockwise to view
        (8, "blue", "red"),  # rotate 90 degrees counter-clockwise to view
    ],
)
def test_exif_orientation_is_applied_before_anything_else(orientation, top, bottom):
    colours = {"red": [255, 0, 0], "blue": [0, 0, 255]}
    img = left_right("RGB", (255, 0, 0), (0, 0, 255), size=(320, 240))
    data = with_orientation(img, orientation)
    upright = imaging.open_oriented(data)
    assert upright.size == (240, 320)
    arr = imaging.model_input(size=224, data=data)
    assert np.allclose(arr[20:90, 80:144].mean(axis=(0, 1)), colours[top], atol=8)
    assert np.allclose(arr[134:204, 80:144].mean(axis=(0, 1)), colours[bottom], atol=8)


def test_orientation_3_turns_the_image_upside_down():
    img = PILImage.new("RGB", (64, 64), (0, 200, 0))
    img.paste((200, 0, 0), (0, 0, 64, 32))  # red on top as stored
    arr = imaging.model_input(size=224, data=with_orientation(img, 3, "PNG"))
    assert np.allclose(arr[150:220].mean(axis=(0, 1)), [200, 0, 0], atol=2)  # red at the bottom when viewed


def test_a_large_jpeg_is_decoded_at_reduced_scale():
    data = imagegen.encode(imagegen.scene(2, (1792, 1344)), "JPEG", quality=92)
    drafted = imaging.open_oriented(data, draft_size=2 * 224)
    assert drafted.size == (896, 672)  # DCT scaling by 1/2, still >= 448 on both sides
    assert imaging.open_oriented(data).size == (1792, 1344)


def test_a_small_jpeg_is_decoded_in_full():
    data = imagegen.jpeg(2, size=(384, 256))
    assert imaging.open_oriented(data, draft_size=2 * 224).size == (384, 256)


# Tolerance for draft vs full decoding, as cosine distance between the two vectors
# (real VGG16, seeded random weights). Measured: about 1e-6. For scale, a near-duplicate
# of the same scene is about 8e-5 away and another scene about 1e-3: a draft decode is
# more than ten times closer to the full decode than any real edit of the picture.
DRAFT_TOLERANCE = 1e-5


@pytest.mark.parametrize("size", [(1792, 1344), (3000, 2000)])
def test_draft_decoding_gives_the_same_vector_as_full_decoding(size):
    scene = imagegen.scene(0, size)
    data = imagegen.encode(scene, "JPEG", quality=92)
    draft, full = (
        imaging.model_input(size=224, data=data, draft=True),
        imaging.model_input(size=224, data=data, draft=False),
    )
    assert np.abs(draft - full).mean() < 1.0  # pixel values 0..255
    other = imaging.model_input(
        size=224, data=imagegen.encode(imagegen.near_duplicate(scene, 1), "JPEG", quality=92), draft=False
    )
    v = embedding.embed_batch([draft, full, other])  # (3, 512)
    draft_distance = 1.0 - float(v[0] @ v[1])
    assert draft_distance < DRAFT_TOLERANCE
    assert draft_distance < (1.0 - float(v[1] @ v[2])) / 10
