"""Images generated in memory for tests: distinct scenes and near-duplicates of them."""

import io

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
