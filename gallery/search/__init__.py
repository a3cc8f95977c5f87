"""Similarity search: the facade the views, the API and the commands call.

    from gallery import search
    search.similar_to_image(user=..., image=..., k=12)
    search.similar_to_images(user=..., gallery=..., positives=[1, 2], negatives=[3])  # several images
    search.search_vector(user=..., gallery=..., vector=...)   # an outside image's vector
    search.similar_results(..., counts=True)                    # the page, with counts per band
    search.exact_search(gallery=..., vectors=..., k=10)        # the brute-force reference

The parts: ann (the only Annoy import), projection (PCA, whitening), store
(index files), cache (versions open in this process), engine (candidates,
delta, exact re-rank, bands, paging), calibration (each build's search_k and
measured recall), bands (what a distance means in a gallery: fit, classify),
queries (outside pictures and their stored links), reads (the hot-path SQL),
quality (exact reference, recall).
"""

from gallery.search.engine import Match, Results, search_results, search_vector, similar_results
from gallery.search.engine import similar_images as similar_to_image
from gallery.search.multi import QueryImagesError, similar_to_images
from gallery.search.quality import exact_search, index_recall

__all__ = [
    "Match",
    "QueryImagesError",
    "Results",
    "exact_search",
    "index_recall",
    "search_results",
    "search_vector",
    "similar_results",
    "similar_to_image",
    "similar_to_images",
]
