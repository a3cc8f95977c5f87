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
