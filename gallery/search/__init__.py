"""Similarity search: the facade the views, the API and the commands call.

    from gallery import search
    search.similar_to_image(user=..., image=..., k=12)
    search.search_vector(user=..., gallery=..., vector=...)   # an outside image's vector
    search.exact_search(gallery=..., vectors=..., k=10)        # the brute-force reference

The parts: ann (the only Annoy import), projection (PCA), store (index files),
cache (versions open in this process), engine (candidates, delta, exact
re-rank, paging), reads (the hot-path SQL), quality (exact reference, recall).
"""

from gallery.search.engine import Match, search_vector
from gallery.search.engine import similar_images as similar_to_image
from gallery.search.quality import exact_search, index_recall

__all__ = ["Match", "exact_search", "index_recall", "search_vector", "similar_to_image"]
