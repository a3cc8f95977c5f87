"""Similarity bands: what a distance means in one gallery, fitted at each build.

A cosine distance alone says little: with ImageNet weights two unrelated
photos may lie at 0.4, with random weights every pair lies below 0.06. So a
result is described against the gallery itself:

- its **percentile**: the share of the gallery's pairs of pictures that lie
  farther apart (99.9 means closer than 99.9 % of pairs);
- its **band**:
  exact copy    the same picture (distance at float precision of zero);
  near-duplicate the same picture edited: re-encoded, resized, cropped,
                mirrored, slightly rotated, greyscale. Told by two signals:
                perceptual hashes within HASH_BITS (what re-encoding,
                resizing, mirroring and greyscale leave alone), or a distance
                in the build's whitened space (projection.fit_whitening)
                within a threshold fitted to generated copies of the
                gallery's own pictures (gallery.services.probes) and well
                below the query's other neighbours (RATIO), which catches
                crops and rotations;
  similar       among the gallery's nearest 1 % of pairs;
  related       among its nearest 5 %;
  distant       the rest.

The fit is a small JSON document on the build row (IndexBuild.bands); the
whitening and the hashes are files of the index version (gallery.search.store).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from gallery.embedding import imaging
from gallery.search import projection

FIT_VERSION: Final = 1
# (key, label, rank): results are ordered by rank (copies first), then distance.
BANDS: Final = (
    ("exact", "Exact copy", 0),
    ("near", "Near-duplicate", 1),
    ("similar", "Similar", 2),
    ("related", "Related", 3),
    ("distant", "Distant", 4),
)
LABELS: Final = {key: label for key, label, _ in BANDS}
RANK: Final = {key: rank for key, _, rank in BANDS}
KEYS: Final = tuple(key for key, _, _ in BANDS)

EXACT_DISTANCE = 1e-6  # float error of the same input through the same model: copies proper sit far above
# Hamming distance of the 63-bit hashes: on corel1k with 600 edited copies the
# hashes alone matched only copies up to 5 bits (precision 1.000; 0.990 at 6),
# and at 3 bits found 0.672 of them: the re-encoded, resized, mirrored and
# greyscale ones (docs/benchmarks.md, "Similarity bands").
HASH_BITS = 3
SIMILAR_SHARE = 0.01  # "similar": the nearest 1 % of the gallery's pairs
RELATED_SHARE = 0.05
# The near-duplicate threshold covers this share of the gallery's generated
# copies (with the hashes' catch counted). On corel1k the band then found
# 0.970 of 600 edited copies it had not been fitted to.
PROBE_RECALL = 0.97
MIN_PROBES = 12  # fewer generated copies than this: the hashes alone tell near-duplicates
# A near-duplicate by whitened distance must also stand out from the query's
# neighbourhood: closer than RATIO x its NEIGHBOURS-th nearest result (Lowe's
# ratio test). A distinct picture of a crowded subject (one of many roses on
# black) is close to many; a copy is much closer than the rest. On corel1k
# with random weights it lifted precision from 0.966 to 0.987 at the same
# recall, 0.970 (docs/benchmarks.md, "Similarity bands").
RATIO = 0.75
NEIGHBOURS = 10
# Where the percentile is read off: fine steps in the near tail, where the bands live.
CDF_SHARES: Final = tuple([0.0] + np.geomspace(1e-5, 1e-2, 31).tolist() + np.linspace(0.02, 1.0, 50).tolist())


@dataclass(frozen=True)
class Probe:
    """One generated copy: its vector, its original's vector, the Hamming distance of their hashes."""

    vector: npt.NDArray[np.float32]  # (D,)
    original: npt.NDArray[np.float32]  # (D,)
    hash_distance: int


def fit(
    pair_distances: npt.NDArray[np.float32], white: npt.NDArray[np.float32], probes: Sequence[Probe]
) -> dict[str, Any]:
    """Return the band fit of a build as a JSON-able dict.

    `pair_distances` are cosine distances between random pairs of the
    gallery's items (calibration.Calibration.pair_distances, any order);
    `white` is the build's whitening; `probes` the gallery's generated copies.
    """
    pairs = np.sort(np.asarray(pair_distances, dtype=np.float64))
    if len(pairs) == 0:
        pairs = np.array([0.0, 2.0])
    cdf = np.quantile(pairs, CDF_SHARES).tolist()
    whitened = projection.is_whitened(white)
    threshold, probe_recall = _near_threshold(white, probes) if whitened and len(probes) >= MIN_PROBES else (None, None)
    return {
        "v": FIT_VERSION,
        "exact": EXACT_DISTANCE,
        "hash_bits": HASH_BITS,
        "white": threshold,  # whitened cosine distance of a near-duplicate, or None: hashes alone
        "similar": float(np.quantile(pairs, SIMILAR_SHARE)),
        "related": float(np.quantile(pairs, RELATED_SHARE)),
        "cdf": [cdf, list(CDF_SHARES)],
        "pairs": int(len(pair_distances)),
        "probes": len(probes),
        "probe_recall": probe_recall,
    }


def _near_threshold(white: npt.NDArray[np.float32], probes: Sequence[Probe]) -> tuple[float, float]:
    """Return the smallest whitened distance that, with the hashes, catches PROBE_RECALL of the probes."""
    copies = projection.whiten(white, np.stack([p.vector for p in probes]))  # (P, w)
    originals = projection.whiten(white, np.stack([p.original for p in probes]))  # (P, w)
    distances = 1.0 - np.sum(copies * originals, axis=1)  # (P,)
    by_hash = np.array([p.hash_distance <= HASH_BITS for p in probes])
    need = int(np.ceil(PROBE_RECALL * len(probes))) - int(by_hash.sum())
    rest = np.sort(distances[~by_hash])
    threshold = 0.0 if need <= 0 or not len(rest) else float(rest[min(need, len(rest)) - 1])
    caught = by_hash | (distances <= threshold)
    return threshold, float(caught.mean())


@dataclass(frozen=True)
class Fitted:
    """A build's band fit, ready to classify results."""

    exact: float
    hash_bits: int
    white: float | None
    similar: float
    related: float
    cdf_distances: npt.NDArray[np.float64]
    cdf_shares: npt.NDArray[np.float64]

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Fitted | None:
        """Return the fit stored on a build, or None for a build from before bands (or of another fit version)."""
        if not data or data.get("v") != FIT_VERSION:
            return None
        distances, shares = data["cdf"]
        return cls(
            exact=float(data["exact"]),
            hash_bits=int(data["hash_bits"]),
            white=None if data["white"] is None else float(data["white"]),
            similar=float(data["similar"]),
            related=float(data["related"]),
            cdf_distances=np.asarray(distances, dtype=np.float64),
            cdf_shares=np.asarray(shares, dtype=np.float64),
        )

    @classmethod
    def hashes_only(cls) -> Fitted:
        """A fit for a build from before bands: near-duplicates by perceptual hash (and exact copies) alone."""
        return cls(
            exact=EXACT_DISTANCE,
            hash_bits=HASH_BITS,
            white=None,
            similar=0.0,
            related=0.0,
            cdf_distances=np.array([0.0, 2.0]),
            cdf_shares=np.array([0.0, 1.0]),
        )

    def percentile(self, distances: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Return 100 x the share of the gallery's pairs farther apart than each distance."""
        below = np.interp(np.asarray(distances, dtype=np.float64), self.cdf_distances, self.cdf_shares)
        return 100.0 * (1.0 - below)

    def threshold(self, band: str) -> float | None:
        """Return the largest cosine distance of a band by distance alone (None: 'near' and 'distant')."""
        return {"exact": self.exact, "similar": self.similar, "related": self.related}.get(band)

    def near(
        self,
        distances: npt.ArrayLike,
        *,
        hash_distances: npt.ArrayLike,
        white_distances: npt.ArrayLike | None,
    ) -> npt.NDArray[np.bool_]:
        """Return which results are copies (exact or near-duplicate): (..., M) bool.

        Each row (the last axis) holds all the results searched for one query,
        as classify() takes them; a row of several queries at once is how the
        duplicate finder asks (gallery.analysis.duplicates). Missing results
        are padded with distance inf and hash distance 64.
        """
        dist = np.asarray(distances, dtype=np.float64)
        near = (np.asarray(hash_distances) <= self.hash_bits) | (dist <= self.exact)
        if self.white is not None and white_distances is not None:
            white = np.asarray(white_distances, dtype=np.float64)
            # The results are the query's neighbourhood: its NEIGHBOURS-th nearest is the yardstick.
            if white.shape[-1] >= NEIGHBOURS:
                kth = np.partition(white, NEIGHBOURS - 1, axis=-1)[..., NEIGHBOURS - 1 : NEIGHBOURS]
            else:
                kth = np.full(white.shape[:-1] + (1,), np.inf)
            near |= (white <= self.white) & (white <= RATIO * kth)
        return near

    def classify(
        self,
        distances: npt.ArrayLike,
        *,
        hash_distances: npt.ArrayLike,
        white_distances: npt.ArrayLike | None,
    ) -> list[str]:
        """Return the band key of each result, given its cosine, hash and whitened distances ((M,) each).

        The results must be all those searched for one query (nearest first by
        cosine, as engine.search_results gathers them): the whitened test
        compares each with the query's NEIGHBOURS-th nearest among them.
        """
        dist = np.asarray(distances, dtype=np.float64)
        near = self.near(dist, hash_distances=hash_distances, white_distances=white_distances)
        out = np.where(
            dist <= self.exact,
            "exact",
            np.where(
                near,
                "near",
                np.where(dist <= self.similar, "similar", np.where(dist <= self.related, "related", "distant")),
            ),
        )
        return [str(b) for b in out]


def hash_distances(query: tuple[int, int] | None, hashes: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Return the Hamming distance of each hash ((M,)) to a query picture or its mirror image, whichever is nearer."""
    hashes = np.asarray(hashes, dtype=np.int64)
    if query is None:
        return np.full(hashes.shape, 64, dtype=np.int64)
    plain, mirror = query
    return np.minimum(imaging.hash_distance(hashes, plain), imaging.hash_distance(hashes, mirror))


def white_distances(
    white: npt.NDArray[np.float32], query: npt.NDArray[np.float32], vectors: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32] | None:
    """Return the whitened cosine distance of each vector ((M, D)) to the query ((D,)); None when not whitened."""
    if not projection.is_whitened(white):
        return None
    if not len(vectors):
        return np.zeros(0, dtype=np.float32)
    return (1.0 - projection.whiten(white, vectors) @ projection.whiten(white, query)).astype(np.float32)
