"""JSON shapes of API answers."""

from functools import lru_cache

from django.urls import get_script_prefix, reverse

_PK = 987654321  # reversed once, then replaced: reverse() per result costs more than the search


@lru_cache(maxsize=8)
def _result_links(script_prefix):
    """The page and thumbnail URLs of image _PK under this script prefix (reverse() reads it)."""
    return tuple(reverse(name, kwargs={"pk": _PK}) for name in ("image_detail", "image_thumb"))


def results_json(matches):
    page, thumb = _result_links(get_script_prefix())
    return [
        {
            "rank": m.rank,
            "id": m.image.pk,
            "name": m.image.original_name,
            "distance": round(m.distance, 6),
            "band": m.band or None,
            "percentile": m.percentile,
            "similarity": round(m.similarity, 2),
            "url": page.replace(str(_PK), str(m.image.pk)),
            "thumbnail": thumb.replace(str(_PK), str(m.image.pk)),
        }
        for m in matches
    ]


def outside_search_json(*, k, page, matches, url, expires_at):
    """An outside search's answer: its results and the signed GET URL of its results page, valid until expires_at."""
    return {"k": k, "page": page, "results": results_json(matches), "url": url, "expires_at": expires_at.isoformat()}
