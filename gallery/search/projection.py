"""The PCA projection an index searches in, and the whitening its bands measure in: fitted per build on the gallery's own vectors."""

import numpy as np
import numpy.typing as npt

# The forest is built over vectors projected to INDEX_DIM by PCA. On
# bench/search.py's clustered data, the exact nearest 128 in 128 dimensions hold
# every true top-10 at 10k, 100k and 1M items; in 64 dimensions they hold only
# 0.89 of it at 1M (docs/benchmarks.md). Real VGG16 features have a steeper
# spectrum than that data, so 128 keeps a margin for them too.
INDEX_DIM = 128
PCA_SAMPLE = 20_000  # rows the projection is fitted on: the spectrum settles well before
# The whitening the near-duplicate band measures in. On corel1k with 600
# edited copies (bench/bands.py --whiten-dims), 256 directions gave precision
# 0.987 at recall 0.970; 128 gave 0.977 / 0.982 and 384 0.994 / 0.888
# (docs/benchmarks.md, "Similarity bands").
WHITEN_DIM = 256
MIN_WHITEN_DIRECTIONS = 32


def _spectrum(
    vectors: npt.NDArray[np.floating], seed: int, keep: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Return (mean (D,), variances (r,), components (r, D)) of a seeded sample of `vectors`, largest first.

    The sample is at most PCA_SAMPLE rows; r <= keep. Components past the
    sample's rank, or of (numerically) zero variance, are left out: their
    directions would be whatever LAPACK happens to return, and they carry no
    information about the gallery. Each component's sign is fixed (largest
    entry positive), so a different LAPACK build cannot flip one.
    """
    n, dim = vectors.shape
    if n > PCA_SAMPLE:
        rows = np.sort(np.random.default_rng(seed).choice(n, PCA_SAMPLE, replace=False))  # (S,)
        sample = np.asarray(vectors[rows], dtype=np.float64)  # (S, D)
    else:
        sample = np.asarray(vectors, dtype=np.float64)  # (N, D)
    mean = sample.mean(axis=0)  # (D,)
    centred = sample - mean  # a copy: `vectors` may already be float64, and is the caller's
    cov = centred.T @ centred / len(sample)  # (D, D)
    eigvals, eigvecs = np.linalg.eigh(cov)  # ascending; eigvecs[:, i] is a component
    eigvals, eigvecs = eigvals[::-1][:keep], eigvecs[:, ::-1][:, :keep]  # (k,), (D, k) largest first
    rank = int(np.count_nonzero(eigvals > eigvals[0] * 1e-7)) if eigvals[0] > 0 else 0
    components = np.ascontiguousarray(eigvecs[:, :rank].T)  # (r, D)
    flip = components[np.arange(len(components)), np.abs(components).argmax(axis=1)] < 0
    components[flip] *= -1
    return mean, eigvals[:rank], components


def fit_projection(vectors: npt.NDArray[np.floating], seed: int = 0) -> npt.NDArray[np.float32]:
    """Return the (1 + INDEX_DIM, D) float32 projection of `vectors` ((N, D) float32).

    Row 0 is the mean of a seeded sample of at most PCA_SAMPLE rows, then the
    top INDEX_DIM principal components of that sample, largest first (zero rows
    past the sample's rank, N <= INDEX_DIM).
    """
    pca = np.zeros((1 + INDEX_DIM, vectors.shape[1]), dtype=np.float32)  # (1 + d, D)
    if len(vectors) == 0:
        return pca
    mean, _variances, components = _spectrum(vectors, seed, INDEX_DIM)
    pca[0] = mean
    pca[1 : 1 + len(components)] = components
    return pca


def fit_whitening(vectors: npt.NDArray[np.floating], seed: int = 0) -> npt.NDArray[np.float32]:
    """Return the (1 + WHITEN_DIM, D) float32 whitening of `vectors` ((N, D) float32).

    Row 0 is the sample mean, then up to WHITEN_DIM principal components each
    divided by its standard deviation, so every direction the gallery varies
    in counts alike: how two pictures differ, not how the gallery's pictures
    differ in general (colour, mostly). Near-duplicates stand out in this
    space (gallery.search.bands). A gallery of N items gets at most N // 4
    directions, and none below MIN_WHITEN_DIRECTIONS (all rows but the mean
    zero): with too few items the variances are noise.
    """
    n, dim = vectors.shape
    white = np.zeros((1 + WHITEN_DIM, dim), dtype=np.float32)  # (1 + w, D)
    keep = min(WHITEN_DIM, n // 4)
    if keep < MIN_WHITEN_DIRECTIONS:
        if n:
            white[0] = np.asarray(vectors, dtype=np.float64).mean(axis=0)
        return white
    mean, variances, components = _spectrum(vectors, seed, keep)
    white[0] = mean
    white[1 : 1 + len(components)] = components / np.sqrt(variances)[:, None]
    return white


def whiten(white: npt.NDArray[np.float32], vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Return vectors ((B, D) or (D,)) whitened with `white` and scaled to unit length: (B, WHITEN_DIM) or (WHITEN_DIM,)."""
    out = (vectors - white[0]) @ white[1:].T
    norms = np.linalg.norm(out, axis=-1, keepdims=True)
    return (out / np.maximum(norms, 1e-12)).astype(np.float32)


def is_whitened(white: npt.NDArray[np.float32]) -> bool:
    """False for a gallery too small to whiten (fit_whitening left every direction out)."""
    return bool(np.any(white[1:]))


def project(pca: npt.NDArray[np.float32], vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Return vectors ((B, D) or (D,)) projected with `pca`: (B, INDEX_DIM) or (INDEX_DIM,)."""
    return (vectors - pca[0]) @ pca[1:].T
