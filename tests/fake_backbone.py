"""A deterministic stand-in for the model, for unit tests: no TensorFlow, microseconds per image.

Each image is shrunk to 8x8 RGB (block means of the model input), centred,
multiplied by a fixed seeded (192, 512) matrix and normalised. Similar pictures
get similar vectors (a near-duplicate lands close, a different scene far), so
search, auto-flagging and the pipeline behave as with a real model, but
nothing here says how well VGG16 retrieves: tests marked `model` run the real one.
"""

import numpy as np

from gallery.embedding.backbones.base import Backbone

GRID = 8


class FakeBackbone(Backbone):
    name = "fake"
    dim = 512
    input_size = 224
    pipeline_id = "fake-blockmean8-randproj"
    weights_setting = "IMAGESEARCH_VGG16_WEIGHTS"  # accepted, unused: the projection is the "weights"

    def __init__(self, *, weights, seed):
        super().__init__(weights=weights, seed=seed)
        rng = np.random.default_rng(seed)
        self.projection = rng.standard_normal((GRID * GRID * 3, self.dim)).astype(np.float32)  # (192, 512)
        self.calls = 0  # batches embedded, for tests that count model calls

    def preprocess(self, batch):
        side = self.input_size // GRID
        b = batch.reshape(len(batch), GRID, side, GRID, side, 3).mean(axis=(2, 4))  # (B, 8, 8, 3)
        flat = b.reshape(len(batch), -1) / 255.0  # (B, 192)
        return flat - flat.mean(axis=1, keepdims=True)

    def load(self):
        pass

    def embed_batch(self, arrays):
        if not len(arrays):
            return np.zeros((0, self.dim), dtype=np.float32)
        self.calls += 1
        x = self.preprocess(np.stack(arrays).astype(np.float32))  # (B, 192)
        feats = x @ self.projection + 1e-3  # (B, 512); the offset keeps a flat grey image off the origin
        return (feats / np.linalg.norm(feats, axis=1, keepdims=True)).astype(np.float32)


class FakeBackboneB(FakeBackbone):
    """A second version for switch tests: another pipeline, 256-wide vectors, its own projection."""

    name = "fakeb"
    dim = 256
    pipeline_id = "fakeb-blockmean8-randproj256"

    def __init__(self, *, weights, seed):
        super().__init__(weights=weights, seed=seed + 7)
        self.seed = seed  # the version names the configured seed, as every backbone's does
