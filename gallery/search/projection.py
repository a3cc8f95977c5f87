"""The PCA projection an index searches in: fitted per build on the gallery's own vectors."""

import numpy as np
import numpy.typing as npt

# The forest is built over vectors projected to INDEX_DIM by PCA. On
# bench/search.py's clustered data, the exact nearest 128 in 128 dimensions hold
# every true top-10 at 10k, 100k and 1M items; in 64 dimensions they hold only
# 0.89 of it at 1M (docs/benchmarks.md). Real VGG16 features have a steeper
# spectrum than that data, so 128 keeps a margin for them too.
INDEX_DIM = 128
PCA_SAMPLE = 20_000  # rows the projection is fitted on: the spectrum settles well before


def fit_projection(vectors: npt.NDArray[np.floating], seed: int = 0) -> npt.NDArray[np.float32]:
    """Return the (1 + INDEX_DIM, D) float32 projection of `vectors` ((N, D) float32).

    Row 0 is the mean of a seeded sample of at most PCA_SAMPLE rows, then the
    top INDEX_DIM principal components of that sample, largest first. Components
    past the sample's rank (N <= INDEX_DIM) are zero rows, as are those of
    (numerically) zero variance: their directions would be whatever LAPACK
    happens to return, and they carry no information about the gallery.
    """
    n, dim = vectors.shape
    pca = np.zeros((1 + INDEX_DIM, dim), dtype=np.float32)  # (1 + d, D)
    if n == 0:
        return pca
    if n > PCA_SAMPLE:
        rows = np.sort(np.random.default_rng(seed).choice(n, PCA_SAMPLE, replace=False))  # (S,)
        sample = np.asarray(vectors[rows], dtype=np.float64)  # (S, D)
    else:
        sample = np.asarray(vectors, dtype=np.float64)  # (N, D)
    mean = sample.mean(axis=0)  # (D,)
    centred = sample - mean  # a copy: `vectors` may already be float64, and is the caller's
    cov = centred.T @ centred / len(sample)  # (D, D)
    eigvals, eigvecs = np.linalg.eigh(cov)  # ascending; eigvecs[:, i] is a component
    eigvals, eigvecs = eigvals[::-1][:INDEX_DIM], eigvecs[:, ::-1][:, :INDEX_DIM]  # (d,), (D, d) largest first
    rank = int(np.count_nonzero(eigvals > eigvals[0] * 1e-7)) if eigvals[0] > 0 else 0
    components = np.ascontiguousarray(eigvecs[:, :rank].T)  # (r, D), r <= d
    # An eigenvector's sign is arbitrary: fix it (largest entry positive) so a
    # different LAPACK build cannot flip a component.
    flip = components[np.arange(len(components)), np.abs(components).argmax(axis=1)] < 0
    components[flip] *= -1
    pca[0] = mean
    pca[1 : 1 + len(components)] = components
    return pca


def project(pca: npt.NDArray[np.float32], vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Return vectors ((B, D) or (D,)) projected with `pca`: (B, INDEX_DIM) or (INDEX_DIM,)."""
    return (vectors - pca[0]) @ pca[1:].T
