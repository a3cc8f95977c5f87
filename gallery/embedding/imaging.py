"""Pillow work: validating uploads, thumbnails, and decoding to model input.

Nothing here knows about Django models or Keras; the model input size comes
from the caller (the active backbone's input_size). The type of a file is decided
by its content, never by its name.
"""

import io
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

THUMB_SIZE = 320
# Formats accepted for upload (Pillow's names) and how they are served.
ACCEPTED_FORMATS = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
}
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "TIFF": "tif", "BMP": "bmp"}


class InvalidImage(ValueError):
    """The file is not an image this product can use; the message is for people."""


@dataclass(frozen=True)
class ImageInfo:
    format: str
    content_type: str
    extension: str
    width: int
    height: int


# An image this narrow is a line, not a picture: its thumbnail and its 224x224
# model input would be meaningless smears. Panoramas (up to ~10:1) pass.
MAX_ASPECT_RATIO = 100
# EXIF orientations that swap width and height (rotated by 90 or 270 degrees).
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}
_TEXT_STARTS = (b"<", b"{", b"[")


def _looks_like_text(data: bytes) -> bool:
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n")  # UTF-8 BOM and white space
    return head.startswith(_TEXT_STARTS) or (bool(head) and all(32 <= b < 127 or b in b"\t\r\n" for b in head))


def inspect(data: bytes, max_pixels: int) -> ImageInfo:
    """Check that `data` is a complete, decodable image of an accepted type and return its facts.

    Only the parsers of accepted formats are tried, so other formats (SVG,
    PDF, EPS, PSD...) never reach a decoder. Width and height are as shown:
    after the EXIF orientation. Raises InvalidImage with a reason a person can read.
    """
    if not data:
        raise InvalidImage("The file is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS)) as img:
                fmt = img.format
                assert fmt is not None  # opened with formats=ACCEPTED_FORMATS: always one of them
                width, height = img.size
                if width < 1 or height < 1:
                    raise InvalidImage("The image has no pixels.")
                if width * height > max_pixels:
                    raise InvalidImage(
                        f"The image is {width}x{height} pixels; the limit is {max_pixels // 1_000_000} megapixels."
                    )
                if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
                    raise InvalidImage(
                        f"The image is {width}x{height} pixels; one side may be at most "
                        f"{MAX_ASPECT_RATIO} times the other."
                    )
                img.load()  # decodes the whole first frame: catches truncated files
                if img.getexif().get(0x0112) in _TRANSPOSED_ORIENTATIONS:
                    width, height = height, width
    except InvalidImage:
        raise
    except UnidentifiedImageError:
        if _looks_like_text(data):
            raise InvalidImage(
                "This is a text document (HTML, SVG, XML or plain text), not an image; "
                "use JPEG, PNG, GIF, WebP, TIFF or BMP."
            ) from None
        raise InvalidImage("This file is not an image (or not one of JPEG, PNG, GIF, WebP, TIFF, BMP).") from None
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise InvalidImage("The image declares an enormous size (a decompression bomb) and was refused.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImage(f"The image is damaged or truncated and cannot be read ({exc}).") from None
    return ImageInfo(fmt, ACCEPTED_FORMATS[fmt], EXTENSIONS[fmt], width, height)


def to_rgb(img: PILImage.Image) -> PILImage.Image:
    """Return an RGB image: transparency composited on white, 16-bit and CMYK converted."""
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in {"I;16", "I;16B", "I;16L", "I;16N", "I"}:
        # Scale 16/32-bit integer samples into 8 bits rather than clipping them.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = PILImage.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), "L")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        img = PILImage.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    if img.mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        img = img.convert("RGBA")
        background = PILImage.new("RGBA", img.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB")


def open_oriented(data: bytes, draft_size: int | None = None) -> PILImage.Image:
    """Open the first frame, upright (EXIF orientation applied), as RGB.

    With `draft_size`, a JPEG much larger than that is decoded at a reduced
    scale (libjpeg's DCT scaling), which is several times cheaper.
    """
    img: PILImage.Image = PILImage.open(io.BytesIO(data))
    if draft_size and img.format == "JPEG":
        # Draft keeps both sides >= the requested size, so quality is unchanged at 224.
        img.draft("RGB", (draft_size, draft_size))
    img = ImageOps.exif_transpose(img)
    return to_rgb(img)


def model_input(data: bytes, size: int, draft: bool = True) -> npt.NDArray[np.float32]:
    """Decode to a model's input: (size, size, 3) float32 RGB in 0..255, squashed to size."""
    img = open_oriented(data, draft_size=size * 2 if draft else None)
    img = img.resize((size, size), PILImage.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(img, dtype=np.float32)  # (size, size, 3)


def thumbnail_jpeg(data: bytes, size: int = THUMB_SIZE) -> bytes:
    """Return a JPEG thumbnail whose longer side is at most `size`."""
    img = open_oriented(data, draft_size=size)
    img.thumbnail((size, size), PILImage.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85, optimize=True)
    return out.getvalue()


# --- Perceptual hashes ------------------------------------------------------
# A 63-bit DCT hash of the picture's luminance (the pHash construction): the
# signs, against their median, of the 8x8 lowest frequencies of a 32x32
# greyscale copy, DC left out. Re-encoding, resizing and removing colour
# barely move it, and a mirrored picture's hash follows from the same
# coefficients (odd horizontal frequencies change sign), so both are kept.
# The embedding tells crops and small rotations apart from other pictures
# better; gallery.search.bands uses the two together.
HASH_SIDE = 32
HASH_FREQS = 8
NO_HASH = 0  # a flat picture hashes to 0, which carries no information: never a match
_DCT = np.cos(
    np.pi * (2 * np.arange(HASH_SIDE)[None, :] + 1) * np.arange(HASH_FREQS)[:, None] / (2 * HASH_SIDE)
)  # (8, 32) DCT-II basis
_MIRROR_SIGN = np.tile((-1.0) ** np.arange(HASH_FREQS), (HASH_FREQS, 1))  # (8, 8): odd horizontal frequencies flip


def _hash_bits(coeffs: npt.NDArray[np.float64]) -> int:
    flat = coeffs.reshape(-1)[1:]  # (63,) DC left out
    bits = flat > np.median(flat)
    return int(np.sum(bits.astype(np.int64) << np.arange(len(bits), dtype=np.int64)))


def perceptual_hashes(img: PILImage.Image) -> tuple[int, int]:
    """Return (hash, hash of the mirrored picture) of an RGB image: two 63-bit ints, NO_HASH if flat."""
    grey = img.convert("L").resize((HASH_SIDE, HASH_SIDE), PILImage.Resampling.BILINEAR)
    pixels = np.asarray(grey, dtype=np.float64)  # (32, 32)
    coeffs = _DCT @ pixels @ _DCT.T  # (8, 8): [vertical, horizontal] frequency
    if np.allclose(coeffs.reshape(-1)[1:], 0.0, atol=1e-6):
        return NO_HASH, NO_HASH
    return _hash_bits(coeffs), _hash_bits(coeffs * _MIRROR_SIGN)


def hashes_of(data: bytes) -> tuple[int, int]:
    """Return perceptual_hashes() of encoded image bytes (decoded small: a JPEG at reduced scale)."""
    return perceptual_hashes(open_oriented(data, draft_size=4 * HASH_SIDE))


def hash_distance(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Return the Hamming distance between hashes (broadcast); 64 (never a match) where either is NO_HASH."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    dist = np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)
    return np.where((a == NO_HASH) | (b == NO_HASH), 64, dist)


# --- Generated copies -------------------------------------------------------
# What people do to a picture before it comes back as a "new" one. The
# similarity bands learn from these (gallery.search.bands) where this
# backbone puts copies of this gallery's pictures. Each parameter is drawn
# from a range, per picture, so the bands fit a family, not six fixed edits.


def copies(data: bytes, seed: int) -> list[tuple[str, bytes]]:
    """Return [(transform, JPEG bytes)]: re-encoded, downscaled, cropped, mirrored, rotated, greyscale."""
    rng = np.random.default_rng(seed)
    img = open_oriented(data, draft_size=1024)
    img.thumbnail((1024, 1024), PILImage.Resampling.LANCZOS)  # copies of a huge original need not be huge
    w, h = img.size
    scale = rng.uniform(0.4, 0.8)
    crop = rng.uniform(0.03, 0.06)  # per side: 6 .. 12 % of each dimension in all
    dx, dy = int(w * crop), int(h * crop)
    angle = rng.uniform(3.0, 7.0) * rng.choice([-1.0, 1.0])
    edits: list[tuple[str, PILImage.Image, int]] = [
        ("jpeg", img, int(rng.integers(50, 76))),
        ("resize", img.resize((max(1, int(w * scale)), max(1, int(h * scale))), PILImage.Resampling.BILINEAR), 90),
        ("crop", img.crop((dx, dy, w - dx, h - dy)), 90),
        ("mirror", ImageOps.mirror(img), 90),
        ("rotate", img.rotate(angle, resample=PILImage.Resampling.BILINEAR), 90),
        ("greyscale", ImageOps.grayscale(img).convert("RGB"), 90),
    ]
    out = []
    for name, edited, quality in edits:
        buf = io.BytesIO()
        edited.save(buf, "JPEG", quality=quality)
        out.append((name, buf.getvalue()))
    return out
