"""Query vectors of outside pictures, and the stored queries behind their results' links.

The web process never loads the model. It decodes and resizes an outside
picture with Pillow (the preprocessing of stored images) and asks the query
worker, which keeps the model loaded, to embed the (S, S, 3) uint8 input
(gallery.jobs.ask_query_worker). In eager mode (no workers) and in unit tests
(IMAGESEARCH_QUERY_IN_PROCESS) the picture is embedded in this process.

A search's vector is stored (gallery.models.OutsideQuery) and its results get a
GET URL carrying a signed, timestamped token of the row's id (token_for);
stored_query reads it back for anyone who may open the gallery.
"""

import base64
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from django.conf import settings
from django.core import signing

from gallery import embedding, jobs, vectors
from gallery.embedding import imaging
from gallery.models import Gallery, OutsideQuery

logger = logging.getLogger(__name__)

TOKEN_SALT = "gallery.outside-query"


class QueryImageError(Exception):
    """The picture cannot be searched with; the message is for people."""


class QueryUnavailable(QueryImageError):
    """Search with a picture cannot run now (no query worker, no weights); the message is for people."""


@dataclass(frozen=True)
class QueryVector:
    vector: npt.NDArray[np.float32]  # (D,) unit vector
    version: str  # the embedding version it was computed with
    hashes: tuple[int, int] | None = None  # the picture's perceptual hash and mirror hash (gallery.search.bands)


def _unavailable(reason: str) -> QueryUnavailable:
    return QueryUnavailable(f"Search with a picture is unavailable: {reason}")


def outside_vector(data: bytes, *, version: str | None = None, in_process: bool = False) -> QueryVector:
    """Decode and embed an outside picture. Raise QueryImageError (or QueryUnavailable) with a readable reason.

    `version` is the embedding version to embed in: the one the searched gallery
    serves (gallery.embedding.served_version), which during a switch of backbone
    is the previous one; default the active version. `in_process` embeds here
    rather than through the query worker (a command-line process that may load the model).
    """
    version = version or embedding.version()
    try:
        imaging.inspect(data, settings.IMAGESEARCH_MAX_PIXELS)
        arr = imaging.model_input(data, embedding.input_size_of(version))  # (S, S, 3) float32 in 0..255
        hashes = imaging.hashes_of(data)
    except imaging.InvalidImage as exc:
        raise QueryImageError(str(exc)) from None
    if in_process or settings.CELERY_TASK_ALWAYS_EAGER or settings.IMAGESEARCH_QUERY_IN_PROCESS:
        try:
            return QueryVector(embedding.embed_batch_as(version, [arr])[0], version, hashes)  # (D,)
        except embedding.WeightsUnavailable as exc:
            raise _unavailable(str(exc)) from None
    # Exact: model_input's values are those of a resized 8-bit image, whole numbers in 0..255.
    pixels = arr.astype(np.uint8)  # (S, S, 3), 150 KB at 224
    payload = {
        "shape": list(pixels.shape),
        "pixels": base64.b64encode(pixels.tobytes()).decode("ascii"),
        "version": version,
    }
    timeout = settings.IMAGESEARCH_QUERY_TIMEOUT_SECONDS
    try:
        answer = jobs.ask_query_worker(payload, timeout=timeout)
    except jobs.NoAnswer as exc:
        raise _unavailable(f"{exc} Try again in a moment; if this persists, the query worker is not running.") from None
    if "error" in answer:
        raise _unavailable(answer["error"])
    if answer["version"] != version:
        raise _unavailable(
            f"the query worker embeds with {answer['version']}, this server with {version} (restart one of them)."
        )
    return QueryVector(vectors.unpack(base64.b64decode(answer["vector"])), version, hashes)


def answer(payload: dict[str, Any]) -> dict[str, Any]:
    """Embed a query worker's payload (from outside_vector); return the answer for the waiting request."""
    shape = tuple(payload["shape"])
    pixels = np.frombuffer(base64.b64decode(payload["pixels"]), dtype=np.uint8).reshape(shape)  # (S, S, 3)
    # A payload without a version comes from a web process started before switches existed.
    version = payload.get("version") or embedding.version()
    started = time.perf_counter()
    try:
        vector = embedding.embed_batch_as(version, [pixels.astype(np.float32)])[0]  # (D,)
    except embedding.WeightsUnavailable as exc:
        logger.error("%s", exc)
        return {"error": str(exc)}
    seconds = time.perf_counter() - started
    logger.info("query embedded in %.0f ms", seconds * 1000)
    return {
        "vector": base64.b64encode(vectors.pack(vector)).decode("ascii"),
        "version": version,
        "seconds": round(seconds, 4),
    }


# --- Stored queries ------------------------------------------------------------


class StoredQueryMissing(Exception):
    """The link names no query of this gallery (mistyped or tampered with); the message is for people."""


class StoredQueryGone(Exception):
    """The link's query can no longer be searched (expired, purged, an older model); the message is for people."""


def token_for(query: OutsideQuery) -> str:
    """Return the signed, timestamped token of a stored query's GET URL."""
    return signing.TimestampSigner(salt=TOKEN_SALT).sign(str(query.pk))


def stored_query(*, gallery: Gallery, token: str) -> OutsideQuery:
    """Return the stored query `token` names in `gallery`; raise StoredQueryMissing or StoredQueryGone."""
    ttl = settings.IMAGESEARCH_QUERY_TTL_SECONDS
    try:
        pk = signing.TimestampSigner(salt=TOKEN_SALT).unsign(token, max_age=ttl)
    except signing.SignatureExpired:
        raise StoredQueryGone("This search has expired: its link is valid for a limited time.") from None
    except signing.BadSignature:
        raise StoredQueryMissing("This search link is not valid: it may have been cut short or changed.") from None
    query = OutsideQuery.objects.filter(pk=pk).first()
    if query is None:
        # A valid signature names a row that existed: it was purged, or its gallery was deleted.
        raise StoredQueryGone("This search has expired: its link is valid for a limited time.")
    if query.gallery_id != gallery.pk:  # a link of another gallery, under this one's slug
        raise StoredQueryMissing("This search link is not valid: it belongs to another gallery.")
    if query.embedding_version != embedding.served_version(gallery):
        raise StoredQueryGone(
            "This search was made with an earlier version of the model, whose results cannot be compared "
            "with today's images."
        )
    return query


def stored_vector(query: OutsideQuery) -> npt.NDArray[np.float32]:
    """Return a stored query's (D,) vector."""
    return vectors.unpack(query.vector)


def stored_hashes(query: OutsideQuery) -> tuple[int, int] | None:
    """Return a stored query picture's (perceptual hash, mirror hash), or None."""
    if query.phash is None or query.phash_mirror is None:
        return None
    return query.phash, query.phash_mirror
