"""Hostile and unusual uploads, through the upload page and the JSON API.

Each bad file gets a clear message of its own, nothing answers 5xx, no row or
stored file is left behind for it, and the good file sent in the same request
still lands. The type is decided by the content, never by the name.
"""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from django.urls import reverse
from PIL import Image as PILImage

from gallery import services
from gallery.models import Image
from tests import imagegen, multipart

pytestmark = pytest.mark.django_db

GOOD_NAME = "good-companion.jpg"


# --- Building the files -------------------------------------------------------


def _png(img, **kwargs):
    return imagegen.encode(img, "PNG", **kwargs)


def _solid(colour, size=(64, 48), mode="RGB"):
    return PILImage.new(mode, size, colour)


def _patched_png_size(width, height):
    """A tiny valid PNG whose header declares width x height."""
    data = bytearray(_png(_solid((10, 20, 30), (1, 1))))
    # Signature (8) + length (4) + b"IHDR" (4), then width and height, then the rest of IHDR, then its CRC.
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
    return bytes(data)


def _truncated(data):
    return data[: len(data) // 2]


def _animated_gif():
    frames = [_solid((255, 0, 0)), _solid((0, 0, 255)), _solid((0, 255, 0))]
    return imagegen.encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _multipage_tiff():
    pages = [_solid((0, 200, 0)), _solid((0, 0, 200))]
    return imagegen.encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def _cmyk_jpeg():
    return imagegen.encode(_solid((0, 255, 255, 0), mode="CMYK"), "JPEG")  # red in CMYK


def _png16():
    ramp = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (48, 1))  # (48, 64) uint16
    return _png(PILImage.fromarray(ramp))  # mode I;16


def _palette_png_with_transparency():
    img = PILImage.new("P", (64, 48), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    img.paste(1, (32, 0, 64, 48))  # right half red, left half index 0 (transparent)
    return _png(img, transparency=0)


def _exif_rotated_jpeg():
    """Stored 200x100 (left red, right blue) with EXIF orientation 6: shown as 100x200."""
    img = PILImage.new("RGB", (200, 100), (255, 0, 0))
    img.paste((0, 0, 255), (100, 0, 200, 100))
    exif = PILImage.Exif()
    exif[0x0112] = 6
    return imagegen.encode(img, "JPEG", exif=exif.tobytes())


def _thumb(image):
    with image.thumbnail.open("rb") as fh:
        return PILImage.open(io.BytesIO(fh.read())).convert("RGB")


def _centre(image):
    thumb = _thumb(image)
    return thumb.getpixel((thumb.width // 2, thumb.height // 2))


def _close(rgb, expected, tol=40):
    return all(abs(a - b) <= tol for a, b in zip(rgb, expected))


def _check_first_frame(image):
    assert image.content_type == "image/gif"
    assert _close(_centre(image), (255, 0, 0)), "the first frame (red) is used"


def _check_first_page(image):
    assert image.content_type == "image/tiff"
    assert _close(_centre(image), (0, 200, 0)), "the first page (green) is used"


def _check_rgb_thumbnail(colour=None):
    def check(image):
        thumb = _thumb(image)
        assert thumb.size[0] > 0 and thumb.size[1] > 0
        if colour is not None:
            assert _close(_centre(image), colour)

    return check


def _check_png16(image):
    assert image.content_type == "image/png"
    thumb = _thumb(image).convert("L")
    left, right = thumb.getpixel((1, thumb.height // 2)), thumb.getpixel((thumb.width - 2, thumb.height // 2))
    assert left < 30 and right > 225, "16-bit samples are scaled into 8 bits, not clipped"


def _check_transparency_on_white(image):
    thumb = _thumb(image)
    assert _close(thumb.getpixel((2, thumb.height // 2)), (255, 255, 255)), "transparent pixels become white"
    assert _close(thumb.getpixel((thumb.width - 3, thumb.height // 2)), (255, 0, 0))


def _check_upright(image):
    assert (image.width, image.height) == (100, 200), "dimensions are as shown, after the EXIF rotation"
    thumb = _thumb(image)
    assert thumb.height > thumb.width
    # Orientation 6 turns the stored left (red) half to the top.
    assert _close(thumb.getpixel((thumb.width // 2, 5)), (255, 0, 0))
    assert _close(thumb.getpixel((thumb.width // 2, thumb.height - 6)), (0, 0, 255))


def _check_type(content_type):
    def check(image):
        assert image.content_type == content_type
        assert image.file.name.endswith("." + content_type.split("/")[1].replace("jpeg", "jpg"))

    return check


def _check_name(expected):
    def check(image):
        assert image.original_name == expected
        # The stored name never contains what the client typed.
        assert Path(image.file.name).parent.as_posix() == f"images/{image.gallery_id}"
        assert len(Path(image.file.name).stem) == 32

    return check


LONG_STEM = "a" * 296
CASES = {
    # id: (file name as sent, bytes, ("rejected", words in the message) or ("added", check))
    "zero-byte": ("empty.jpg", b"", ("rejected", "empty")),
    "random-bytes-named-jpg": ("noise.jpg", np.random.default_rng(7).bytes(4096), ("rejected", "not an image")),
    "truncated-jpeg": ("cut.jpg", _truncated(imagegen.jpeg(11)), ("rejected", "truncated")),
    "truncated-png": ("cut.png", _truncated(_png(imagegen.scene(12))), ("rejected", "truncated")),
    "text-named-png": ("notes.png", b"Shopping list: eggs, milk.\n", ("rejected", "text document")),
    "html-named-png": ("page.png", b"<!doctype html><script>alert(1)</script>", ("rejected", "text document")),
    "svg": (
        "drawing.svg",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>',
        ("rejected", "SVG"),
    ),
    "svg-named-jpg": (
        "drawing.jpg",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10" onload="alert(1)"></svg>',
        ("rejected", "not an image"),
    ),
    "decompression-bomb": ("bomb.png", _patched_png_size(100_000, 100_000), ("rejected", "decompression bomb")),
    "absurd-pixel-count": ("huge.png", _patched_png_size(9_000, 9_000), ("rejected", "limit is 80 megapixels")),
    "absurd-aspect-ratio": ("line.png", _png(_solid((0, 0, 0), (20_000, 2))), ("rejected", "at most 100 times")),
    "animated-gif": ("moving.gif", _animated_gif(), ("added", _check_first_frame)),
    "cmyk-jpeg": ("print.jpg", _cmyk_jpeg(), ("added", _check_rgb_thumbnail((255, 0, 0)))),
    "16-bit-png": ("deep.png", _png16(), ("added", _check_png16)),
    "palette-png-with-transparency": (
        "logo.png",
        _palette_png_with_transparency(),
        ("added", _check_transparency_on_white),
    ),
    "grayscale": ("grey.jpg", imagegen.encode(_solid(128, mode="L")), ("added", _check_rgb_thumbnail((128, 128, 128)))),
    "exif-rotated": ("phone.jpg", _exif_rotated_jpeg(), ("added", _check_upright)),
    "webp": ("modern.webp", imagegen.encode(imagegen.scene(21), "WEBP"), ("added", _check_type("image/webp"))),
    "multi-page-tiff": ("scan.tif", _multipage_tiff(), ("added", _check_first_page)),
    "png-named-jpg": ("actually-png.jpg", _png(imagegen.scene(22)), ("added", _check_type("image/png"))),
    "jpeg-named-txt": ("photo.txt", imagegen.jpeg(23), ("added", _check_type("image/jpeg"))),
    "path-traversal-name": ("../../x.jpg", imagegen.jpeg(24), ("added", _check_name("x.jpg"))),
    "windows-traversal-name": ("..\\..\\windows\\y.jpg", imagegen.jpeg(25), ("added", _check_name("y.jpg"))),
    "control-characters-name": (
        "be\x07ll\x1b[31m\x7f\u202eevil.jpg",
        imagegen.jpeg(26),
        ("added", _check_name("bell[31mevil.jpg")),
    ),
    "emoji-name": ("sunset 🌅 à la plage.jpg", imagegen.jpeg(27), ("added", _check_name("sunset 🌅 à la plage.jpg"))),
    # Django keeps the last 255 characters' worth, extension included.
    "300-character-name": (LONG_STEM + ".jpg", imagegen.jpeg(28), ("added", _check_name("a" * 251 + ".jpg"))),
}


# --- Sending them --------------------------------------------------------------


@pytest.fixture
def gallery(owner):
    return services.gallery_create(owner=owner, title="Hostile input")


def _stored_files(root):
    media = Path(root) / "media"
    return sorted(p.relative_to(media).as_posix() for p in media.rglob("*") if p.is_file()) if media.exists() else []


def _send(client, route, gallery, files):
    """POST `files` through the page (`route="page"`) or the API; return {name: (status, message)}."""
    body, content_type = multipart.encode(files)
    if route == "api":
        response = client.post(reverse("api_upload", args=[gallery.slug]), body, content_type=content_type)
        assert response.status_code == 200, response.content[:500]
        return {r["name"]: (r["status"], r["message"]) for r in response.json()["results"]}, response
    response = client.post(reverse("gallery_upload", args=[gallery.slug]), body, content_type=content_type, follow=True)
    assert response.status_code == 200, response.content[:500]
    shown = [str(m) for m in response.context["messages"]]
    return shown, response


def _good_file():
    return (GOOD_NAME, imagegen.jpeg(99), "image/jpeg")


@pytest.mark.parametrize("route", ["page", "api"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_each_bad_or_odd_file_gets_its_own_answer_and_the_good_file_lands(
    client, owner, gallery, isolated_files, route, case
):
    sent_name, data, (expected, detail) = CASES[case]
    client.force_login(owner)
    # The client's content type is a lie on purpose: the server must not care.
    result, _ = _send(client, route, gallery, [(sent_name, data, "image/jpeg"), _good_file()])

    stored_name = services.clean_filename(sent_name)
    if case == "300-character-name":
        stored_name = "a" * 251 + ".jpg"
    good = Image.objects.get(gallery=gallery, original_name=GOOD_NAME)
    if expected == "rejected":
        if route == "api":
            status, message = result[stored_name]
            assert status == "rejected"
            assert detail.lower() in message.lower()
            assert result[GOOD_NAME] == ("added", "")
        else:
            assert any(m.startswith(f"{stored_name}: ") and detail.lower() in m.lower() for m in result), result
            assert "1 image(s) added; they are being processed." in result
        assert list(Image.objects.filter(gallery=gallery)) == [good], "no row for the rejected file"
        assert _stored_files(isolated_files) == sorted([good.file.name, good.thumbnail.name]), "no orphan file"
    else:
        if route == "api":
            assert result[stored_name][0] == "added", result
            assert result[GOOD_NAME] == ("added", "")
        else:
            assert "2 image(s) added; they are being processed." in result, result
        image = Image.objects.get(gallery=gallery, original_name=stored_name)
        detail(image)
        assert Image.objects.filter(gallery=gallery).count() == 2
        assert len(_stored_files(isolated_files)) == 4


@pytest.mark.parametrize("route", ["page", "api"])
def test_a_file_over_the_size_limit_is_refused_with_the_limit_and_the_rest_land(
    client, owner, gallery, settings, isolated_files, route
):
    settings.IMAGESEARCH_MAX_UPLOAD_BYTES = 1024 * 1024
    big = _png(PILImage.fromarray(np.random.default_rng(3).integers(0, 256, (700, 700, 3), dtype=np.uint8)))
    assert len(big) > 1024 * 1024
    client.force_login(owner)
    result, _ = _send(client, route, gallery, [("big.png", big, "image/png"), _good_file()])
    expected = f"big.png: The file is too large ({len(big) / 1048576:.1f} MB; the limit is 1 MB)."
    if route == "api":
        assert f"big.png: {result['big.png'][1]}" == expected and result["big.png"][0] == "rejected"
        assert result[GOOD_NAME][0] == "added"
    else:
        assert expected in result
    assert list(Image.objects.filter(gallery=gallery).values_list("original_name", flat=True)) == [GOOD_NAME]
    assert len(_stored_files(isolated_files)) == 2


@pytest.mark.parametrize("route", ["page", "api"])
def test_more_files_than_the_request_limit_is_refused_whole_with_the_limit(
    client, owner, gallery, settings, isolated_files, route
):
    # Django counts files while parsing the body, before any view runs; the
    # whole request is refused with the limit in the message and nothing is stored.
    settings.IMAGESEARCH_MAX_FILES_PER_REQUEST = 3
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 3
    client.force_login(owner)
    files = [(f"s{i}.jpg", imagegen.jpeg(40 + i), "image/jpeg") for i in range(4)]
    body, content_type = multipart.encode(files)
    url = reverse("api_upload" if route == "api" else "gallery_upload", args=[gallery.slug])
    response = client.post(url, body, content_type=content_type)
    assert 400 <= response.status_code < 500
    text = response.json()["error"] if route == "api" else response.content.decode()
    assert "at most 3 files" in text
    assert not Image.objects.filter(gallery=gallery).exists()
    assert _stored_files(isolated_files) == []


def test_a_request_larger_than_the_request_limit_is_refused_before_it_is_read(
    client, owner, gallery, settings, isolated_files
):
    settings.IMAGESEARCH_MAX_REQUEST_BYTES = 64 * 1024
    client.force_login(owner)
    files = [(f"s{i}.jpg", imagegen.jpeg(50 + i, size=(640, 480)), "image/jpeg") for i in range(3)]
    body, content_type = multipart.encode(files)
    assert len(body) > 64 * 1024
    response = client.post(reverse("gallery_upload", args=[gallery.slug]), body, content_type=content_type)
    assert response.status_code == 413
    assert "too large" in response.content.decode().lower()
    assert owner.username in response.content.decode()  # the page still knows who is signed in
    api = client.post(reverse("api_upload", args=[gallery.slug]), body, content_type=content_type)
    assert api.status_code == 413 and "error" in api.json()
    assert not Image.objects.filter(gallery=gallery).exists()
    assert _stored_files(isolated_files) == []


def test_an_identical_file_is_reported_as_a_duplicate_not_stored_twice(client, owner, gallery, isolated_files):
    client.force_login(owner)
    same = imagegen.jpeg(60)
    result, _ = _send(client, "api", gallery, [("one.jpg", same, "image/jpeg"), ("two.jpg", same, "image/jpeg")])
    assert result["one.jpg"][0] == "added"
    assert result["two.jpg"][0] == "duplicate" and "one.jpg" in result["two.jpg"][1]
    assert Image.objects.filter(gallery=gallery).count() == 1
    assert len(_stored_files(isolated_files)) == 2


def test_display_names_lose_directories_and_control_characters_and_stay_within_255_characters():
    assert services.clean_filename("../../etc/passwd") == "passwd"
    assert services.clean_filename("C:\\Users\\x\\..\\y.png") == "y.png"
    assert services.clean_filename("a\x00b\nc\u202e.jpg") == "abc.jpg"
    assert services.clean_filename("🌅.jpg") == "🌅.jpg"
    assert services.clean_filename("a" * 296 + ".jpg") == "a" * 247 + ".jpg"
    assert services.clean_filename("") == services.clean_filename("../") == "unnamed"
