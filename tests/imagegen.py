"""Images generated in memory for tests: distinct scenes and near-duplicates of them."""

import io
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance


def scene(seed, size=(320, 240)):
    """Return a PIL image of a random scene: a gradient with coloured shapes."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.zeros((h, w, 3), dtype=np.float64)
    for c in range(3):
        a, b, d = rng.uniform(-1, 1, 3)
        base[..., c] = 128 + 100 * np.sin(a * xx / 40 + b * yy / 40 + d * 3)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 9))):
        x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
        x1, y1 = x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    return img


def near_duplicate(img, seed=0):
    """Return a slightly altered copy: brighter, resized, a little noise."""
    rng = np.random.default_rng(seed)
    out = ImageEnhance.Brightness(img).enhance(1.06).resize((img.width - 8, img.height - 6))
    arr = np.asarray(out, dtype=np.float64) + rng.normal(0, 3, (out.height, out.width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def encode(img, fmt="JPEG", **kwargs):
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def jpeg(seed, size=(320, 240)):
    return encode(scene(seed, size), "JPEG", quality=90)


# Ten labels, as in a photo collection sorted into class folders.
CLASSES = ("africa", "beach", "buildings", "buses", "dinosaurs", "elephants", "flowers", "horses", "mountains", "food")


def photo(label, index, size=(384, 256)):
    """Return a PIL image standing in for photo `index` of class `label`, photo-sized.

    The class fixes a palette and a texture (stripe orientation and frequency), so
    images of a class look alike and classes differ; each image varies the phase,
    adds its own shapes and sensor-like noise, so that it encodes to a JPEG of a
    photo's size and no two images share bytes."""
    class_seed = zlib.crc32(label.encode())
    cls = np.random.default_rng(class_seed)
    rng = np.random.default_rng([class_seed, index])
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    palette = cls.uniform(20, 235, (3, 3))
    angle = cls.uniform(0, np.pi) + rng.normal(0, 0.15)
    freq = cls.uniform(0.02, 0.12) * rng.uniform(0.85, 1.2)
    t = (np.sin(freq * (xx * np.cos(angle) + yy * np.sin(angle)) + rng.uniform(0, 2 * np.pi)) + 1) / 2
    fade = (yy / h)[..., None]  # a horizon: the third colour towards the bottom
    arr = (palette[0] * (1 - t)[..., None] + palette[1] * t[..., None]) * (1 - fade) + palette[2] * fade
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 8))):
        x0, y0 = int(rng.integers(0, w - 30)), int(rng.integers(0, h - 30))
        x1, y1 = x0 + int(rng.integers(15, w // 3)), y0 + int(rng.integers(15, h // 3))
        colour = tuple(int(v) for v in np.clip(palette[int(rng.integers(0, 3))] + rng.normal(0, 40, 3), 0, 255))
        (draw.ellipse if cls.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    noisy = np.asarray(img, dtype=np.float64) + rng.normal(0, 10, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def photo_jpeg(label, index, size=(384, 256)):
    return encode(photo(label, index, size), "JPEG", quality=85)
