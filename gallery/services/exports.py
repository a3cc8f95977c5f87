"""Exports an owner asks for: a gallery's embeddings, its index snapshot, a result list.

export_request() checks and records the request and queues it; a worker on
the index queue runs export_build(), which writes the file into storage under
exports/<gallery id>/ and marks the row ready (or failed, with a reason a
person can read). Beat deletes exports, row and file, IMAGESEARCH_EXPORT_DAYS
after they were asked for.

What the files hold (the README's "Exports" section says the same for users):
  embeddings  ZIP: embeddings.npy (N, D) float32 unit vectors, row i = line i
              of ids.csv (id, original_name, sha256, width, height,
              created_at), and manifest.json (embedding version, backbone,
              dim, count). The searchable images of the gallery: embedded
              with the current version, not rejected, not in the trash.
  index       ZIP: the current build's index files as search uses them
              (gallery.search.store) and manifest.json (version, checksum,
              trees, items, search mode, recall, how to load the forest).
  results     CSV or JSON: one result list (rank, id, name, distance, band,
              url), as the owner sees it, up to RESULTS_CAP results.
"""

from __future__ import annotations

import csv
import json
import logging
import secrets
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from gallery import embedding, jobs, locks, search, selectors
from gallery.models import Export, Gallery, Image
from gallery.search import ann, bands, multi, projection, queries, store
from gallery.services.galleries import delete_files

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

logger = logging.getLogger(__name__)

# The deepest rank a results page reaches (SearchControlsForm.MAX_DEPTH): an
# export holds the whole list a person could page through, no more.
RESULTS_CAP = 1000
# Pending or running exports per gallery: more waits until these finish.
MAX_ACTIVE = 10
ROW_CHUNK = 2000  # database rows read at a time: bounds what an embeddings export holds in memory
COPY_CHUNK = 1 << 22
ACTIVE = (Export.Status.PENDING, Export.Status.RUNNING)
FORMATS = {
    Export.Kind.EMBEDDINGS: (Export.Format.ZIP,),
    Export.Kind.INDEX: (Export.Format.ZIP,),
    Export.Kind.RESULTS: (Export.Format.CSV, Export.Format.JSON),
}
IDS_FIELDS = ("id", "original_name", "sha256", "width", "height", "created_at")
RESULT_FIELDS = ("rank", "id", "name", "distance", "band", "url")


class ExportError(Exception):
    """An export that cannot be asked for or built; the message is for people."""


# --- Request -------------------------------------------------------------------


def export_request(
    *,
    user: User | AnonymousUser,
    gallery: Gallery,
    kind: str,
    format: str = "",
    params: Mapping[str, Any] | None = None,
    base_url: str = "",
) -> Export:
    """Record an export of `gallery` for its owner and queue its build; return it.

    `format` defaults to zip (embeddings, index) or csv (results). A result
    list's `params` name its query: {"image": id}, {"outside": token} (a stored
    outside search's link) or {"pos": [ids], "neg": [ids]} (a multi-image
    query), optionally with the page's "band" and "max_distance". `base_url`
    (scheme and host) makes the results' links absolute. An identical request
    still pending or running is returned instead of a new one. Raise
    ExportError with the reason.
    """
    if not user.is_authenticated or gallery.owner_id != user.pk:
        raise ExportError("Only the gallery's owner can export it.")
    if kind not in FORMATS:
        raise ExportError(f"Unknown export {kind!r}: choose embeddings, index or results.")
    allowed = FORMATS[Export.Kind(kind)]
    format = format or allowed[0]
    if format not in allowed:
        raise ExportError(f"A {kind} export is a {' or '.join(f.upper() for f in allowed)} file, not {format!r}.")
    clean = _clean_params(user, gallery, kind, dict(params or {}))
    if kind == Export.Kind.RESULTS and base_url:
        clean["base_url"] = base_url.rstrip("/")
    with transaction.atomic():
        # Locks the gallery row: two identical requests at once make one export.
        Gallery.objects.select_for_update().filter(pk=gallery.pk).first()
        active = list(Export.objects.filter(gallery=gallery, status__in=ACTIVE))
        for existing in active:
            if existing.kind == kind and existing.format == format and existing.params == clean:
                return existing
        if len(active) >= MAX_ACTIVE:
            raise ExportError(
                f"{len(active)} exports of this gallery are still being built; try again when they are done."
            )
        export = Export.objects.create(gallery=gallery, requested_by_id=user.pk, kind=kind, format=format, params=clean)
        jobs.queue_export(export.pk)
    return export


def _clean_params(user: User, gallery: Gallery, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Return the params in one canonical form (so identical requests compare equal); raise ExportError."""
    if kind != Export.Kind.RESULTS:
        if params:
            raise ExportError(f"A {kind} export takes no query.")
        return {}
    clean: dict[str, Any] = {}
    named = [key for key in ("image", "outside", "pos") if key in params]
    if len(named) != 1 or ("neg" in params and named != ["pos"]):
        raise ExportError('Name the result list: {"image": id}, {"outside": token} or {"pos": [ids], "neg": [ids]}.')
    if "image" in params:
        pk = _int(params["image"], "image")
        if not Image.objects.filter(pk=pk, gallery=gallery).exists():
            raise ExportError(f"Image {pk} is not in this gallery.")
        clean["image"] = pk
    elif "outside" in params:
        token = str(params["outside"])
        try:
            queries.stored_query(gallery=gallery, token=token)
        except (queries.StoredQueryMissing, queries.StoredQueryGone) as exc:
            raise ExportError(str(exc)) from None
        clean["outside"] = token
    else:
        pos, neg = _ids(params.get("pos"), "pos"), _ids(params.get("neg", []), "neg")
        try:  # the checks of the search itself: in the gallery, embedded, not both positive and negative
            multi.query_images(user=user, gallery=gallery, positives=pos, negatives=neg)
        except multi.QueryImagesError as exc:
            raise ExportError(str(exc)) from None
        clean["pos"], clean["neg"] = pos, neg
    band = params.get("band") or None
    if band is not None:
        if band not in bands.KEYS:
            raise ExportError(f"Unknown band {band!r}: choose one of {', '.join(bands.KEYS)}.")
        clean["band"] = band
    if params.get("max_distance") not in (None, ""):
        try:
            distance = float(params["max_distance"])
        except (TypeError, ValueError):
            raise ExportError("max_distance is a number from 0 to 2.") from None
        if not 0.0 <= distance <= 2.0:
            raise ExportError("max_distance is a number from 0 to 2.")
        clean["max_distance"] = distance
    return clean


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
        raise ExportError(f"{name} is an image id (a whole number), not {value!r}.")
    return int(value)


def _ids(value: Any, name: str) -> list[int]:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple):
        raise ExportError(f"{name} is a list of image ids.")
    return sorted({_int(v.strip() if isinstance(v, str) else v, name) for v in value})


# --- Build ---------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    path: Path  # the finished file, in a scratch directory
    rows: int
    embedding_version: str


def export_build(*, export_id: int) -> Export | None:
    """Build one export (the task body); return it, or None when it is gone or another delivery holds it.

    Safe to run twice: a ready or failed export is left as it is, and a second
    delivery while the first builds does nothing. A failure is recorded on the
    row with its reason.
    """
    with locks.export_lock(export_id) as acquired:
        if not acquired:
            logger.info("export %s: another delivery is building it", export_id)
            return None
        export = Export.objects.select_related("gallery").filter(pk=export_id).first()
        if export is None or export.status in (Export.Status.READY, Export.Status.FAILED):
            return export
        Export.objects.filter(pk=export_id).update(status=Export.Status.RUNNING)
        with tempfile.TemporaryDirectory(dir=scratch_dir(), prefix=f"export-{export_id}-") as tmp:
            try:
                built = BUILDERS[Export.Kind(export.kind)](export, Path(tmp))
                name = _save(export, built.path)
            except ExportError as exc:
                return _fail(export, str(exc))
            except Exception as exc:
                logger.exception("export %s failed", export_id)
                _fail(export, f"The export failed: {type(exc).__name__}: {exc}")
                raise
        done = Export.objects.filter(pk=export_id, status=Export.Status.RUNNING).update(
            status=Export.Status.READY,
            file=name,
            size_bytes=default_storage.size(name),
            row_count=built.rows,
            embedding_version=built.embedding_version,
            error="",
            finished_at=timezone.now(),
        )
        if not done:  # deleted (or purged) while it was built: nothing must keep the file
            delete_files([name])
            return None
    export.refresh_from_db()
    logger.info(
        "export %s (%s of gallery %s): %d rows, %d bytes",
        export.pk,
        export.kind,
        export.gallery_id,
        built.rows,
        export.size_bytes,
    )
    return export


def scratch_dir() -> Path:
    """Where files are assembled before they go to storage: the index worker's local disk, not /tmp
    (often a RAM disk, and an embeddings export of a million images is 2 GB)."""
    path = Path(settings.IMAGESEARCH_INDEX_DIR) / "exports-tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _fail(export: Export, reason: str) -> Export:
    Export.objects.filter(pk=export.pk).update(status=Export.Status.FAILED, error=reason, finished_at=timezone.now())
    export.refresh_from_db()
    return export


def _save(export: Export, path: Path) -> str:
    """Store the finished file under exports/<gallery>/ with an unguessable name; return the storage name."""
    name = f"exports/{export.gallery_id}/{export.pk}-{secrets.token_hex(8)}.{export.format}"
    with open(path, "rb") as fh:
        return default_storage.save(name, File(fh))


def _manifest(export: Export, **fields: Any) -> bytes:
    gallery = export.gallery
    head = {"gallery": gallery.slug, "gallery_title": gallery.title, "export": export.kind, "export_id": export.pk}
    return json.dumps({**head, **fields, "created_at": timezone.now().isoformat()}, indent=1).encode()


def _build_embeddings(export: Export, tmp: Path) -> Built:
    """The gallery's searchable vectors as .npy, with ids.csv in the same row order, in a ZIP.

    The vectors stream from the database straight into a scratch file (their
    bytes already are little-endian float32), then into the ZIP behind an
    .npy header: memory holds one chunk of rows, never the matrix.
    """
    version = embedding.served_version(export.gallery)  # the previous version while a switch runs
    dim = embedding.dim_of(version)
    rows = (
        Image.objects.searchable()
        .filter(gallery_id=export.gallery_id, embedding_version=version)
        .order_by("pk")
        .values_list("pk", "original_name", "sha256", "width", "height", "created_at", "embedding")
    )
    raw_path, ids_path = tmp / "vectors.f32", tmp / "ids.csv"
    count = 0
    with open(raw_path, "wb") as raw, open(ids_path, "w", newline="", encoding="utf-8") as ids:
        writer = csv.writer(ids)
        writer.writerow(IDS_FIELDS)
        for pk, name, sha, width, height, created, blob in rows.iterator(chunk_size=ROW_CHUNK):
            data = bytes(blob)
            if len(data) != dim * 4:
                raise ExportError(f"Image {pk} has a vector of {len(data) // 4} floats, not {dim}: embed it again.")
            raw.write(data)
            writer.writerow((pk, csv_safe(name), sha, width, height, created.isoformat()))
            count += 1
    out = tmp / "embeddings.zip"
    nbytes = count * dim * 4
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        # Stored, not deflated: float32 noise barely compresses, and a stored member can be memory-mapped.
        info = zipfile.ZipInfo("embeddings.npy", date_time=timezone.now().timetuple()[:6])
        info.compress_type = zipfile.ZIP_STORED
        with zf.open(info, "w", force_zip64=nbytes > (1 << 31) - (1 << 20)) as member, open(raw_path, "rb") as raw:
            header = {"descr": "<f4", "fortran_order": False, "shape": (count, dim)}
            np.lib.format.write_array_header_1_0(member, header)
            shutil.copyfileobj(raw, member, COPY_CHUNK)
        raw_path.unlink()
        zf.write(ids_path, "ids.csv")
        zf.writestr(
            "manifest.json",
            _manifest(
                export,
                embedding_version=version,
                backbone=embedding.backbone_name(version),
                dim=dim,
                count=count,
                dtype="float32",
                files={"embeddings.npy": f"({count}, {dim}) float32 unit vectors", "ids.csv": "row i = vector i"},
                note="Only images that search uses: embedded with this version, not rejected, not in the trash.",
            ),
        )
    return Built(out, count, version)


def _build_index(export: Export, tmp: Path) -> Built:
    """The current build's index files, verified against its checksum, in a ZIP with a manifest."""
    gallery = export.gallery
    build = gallery.current_build()
    if build is None:
        raise ExportError(
            "This gallery has no index yet: one is built shortly after its images are processed. "
            "Ask again once the gallery page shows an index version."
        )
    try:
        paths = store.verified_files(store.ref_for(build))
    except store.IndexUnavailable as exc:
        raise ExportError(f"Index v{build.version} cannot be read right now ({exc}); ask again later.") from None
    out = tmp / "index.zip"
    search_mode = selectors.index_search_mode(build)
    names = [p.name for p in paths]
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for path in paths:
            try:
                zf.write(path, path.name)
            except FileNotFoundError:
                raise ExportError(
                    f"Index v{build.version} was replaced while it was being exported; ask for the export again."
                ) from None
        zf.writestr(
            "manifest.json",
            _manifest(
                export,
                version=build.version,
                embedding_version=build.embedding_version,
                backbone=embedding.backbone_name(build.embedding_version),
                dim=embedding.dim_of(build.embedding_version),
                n_trees=build.n_trees,
                checksum=build.checksum,
                checksum_of="sha256 over the bytes of " + ", ".join(names) + ", in this order",
                item_count=build.item_count,
                built_at=build.built_at.isoformat(),
                search={
                    "mode": search_mode["mode"],
                    "recall_at_10": search_mode["recall"],
                    "recall_queries": build.recall_queries,
                    "search_k": build.search_k,
                    "pool": build.pool,
                },
                files={
                    names[
                        0
                    ]: f"Annoy forest, {projection.INDEX_DIM} dimensions, metric {ann.METRIC!r}, over the projected vectors",
                    names[1]: "(N,) int64 image ids, sorted: Annoy item i is image ids[i]",
                    names[2]: "(N, D) float32 unit vectors, row i = item i (the exact re-rank)",
                    names[3]: f"(1 + {projection.INDEX_DIM}, D) float32: the mean, then the PCA components",
                    names[4]: f"(1 + {projection.WHITEN_DIM}, D) float32: the whitening the similarity bands use",
                    names[5]: "(N,) int64 perceptual hash of each item",
                },
                load=(
                    f"f = annoy.AnnoyIndex({projection.INDEX_DIM}, {ann.METRIC!r}); f.load({names[0]!r}); "
                    f"p = numpy.load({names[3]!r}); q = (v - p[0]) @ p[1:].T; "
                    "items = f.get_nns_by_vector(q.tolist(), n); ids = numpy.load(...ids.npy)[items]"
                ),
            ),
        )
    return Built(out, build.item_count, build.embedding_version)


def _build_results(export: Export, tmp: Path) -> Built:
    rows = list(result_rows(export))
    out = tmp / f"results.{export.format}"
    if export.format == Export.Format.JSON:
        query = {k: v for k, v in export.params.items() if k != "base_url"}
        payload = {
            "gallery": export.gallery.slug,
            "query": query,
            "embedding_version": embedding.served_version(export.gallery),
            "count": len(rows),
            "cap": RESULTS_CAP,
            "created_at": timezone.now().isoformat(),
            "results": rows,
        }
        out.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    else:
        with open(out, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=RESULT_FIELDS)
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "name": csv_safe(row["name"]), "band": row["band"] or ""})
    return Built(out, len(rows), embedding.served_version(export.gallery))


def result_rows(export: Export) -> Iterator[dict[str, Any]]:
    """The result list an export names, as its gallery's owner sees it: dicts of RESULT_FIELDS, best first."""
    gallery = export.gallery
    owner = gallery.owner
    params = export.params
    options = {"k": RESULTS_CAP, "max_distance": params.get("max_distance"), "band": params.get("band")}
    if "image" in params:
        image = Image.objects.select_related("gallery").filter(pk=params["image"], gallery=gallery).first()
        if image is None:
            raise ExportError(f"Image {params['image']} is no longer in this gallery.")
        matches = search.similar_results(user=owner, image=image, **options).matches
    elif "outside" in params:
        try:
            stored = queries.stored_query(gallery=gallery, token=params["outside"])
        except (queries.StoredQueryMissing, queries.StoredQueryGone) as exc:
            raise ExportError(str(exc)) from None
        matches = search.search_results(
            user=owner,
            gallery=gallery,
            vector=queries.stored_vector(stored),
            query_hashes=queries.stored_hashes(stored),
            **options,
        ).matches
    elif "pos" in params:
        matches = _multi_image_matches(gallery, owner, params, options)
    else:
        raise ExportError("This export names no result list.")
    base = params.get("base_url", "")
    detail = reverse("image_detail", kwargs={"pk": 987654321})
    for m in matches:
        yield {
            "rank": m.rank,
            "id": m.image.pk,
            "name": m.image.original_name,
            "distance": round(m.distance, 6),
            "band": m.band or None,
            "url": base + detail.replace("987654321", str(m.image.pk)),
        }


def _multi_image_matches(
    gallery: Gallery, owner: User, params: Mapping[str, Any], options: dict[str, Any]
) -> list[search.Match]:
    try:
        return search.similar_to_images(
            user=owner, gallery=gallery, positives=params["pos"], negatives=params["neg"], **options
        ).matches
    except multi.QueryImagesError as exc:
        raise ExportError(str(exc)) from None


BUILDERS = {
    Export.Kind.EMBEDDINGS: _build_embeddings,
    Export.Kind.INDEX: _build_index,
    Export.Kind.RESULTS: _build_results,
}


def csv_safe(text: str) -> str:
    """A name as a spreadsheet should show it: never a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# --- Expiry --------------------------------------------------------------------


def export_expires_at(export: Export) -> datetime:
    return export.created_at + timedelta(days=settings.IMAGESEARCH_EXPORT_DAYS)


def export_is_expired(export: Export, *, now: datetime | None = None) -> bool:
    return (now or timezone.now()) >= export_expires_at(export)


def exports_purge_expired(*, now: datetime | None = None) -> int:
    """Delete exports asked for more than IMAGESEARCH_EXPORT_DAYS ago, rows and files (run by beat). Return how many."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.IMAGESEARCH_EXPORT_DAYS)
    with transaction.atomic():
        rows = list(Export.objects.filter(created_at__lt=cutoff).values_list("pk", "file"))
        Export.objects.filter(pk__in=[pk for pk, _ in rows]).delete()
        names = [name for _, name in rows if name]
        transaction.on_commit(lambda: delete_files(names))
    return len(rows)


# An export still pending this long was lost (broker down at request time, a
# worker killed mid-build): beat queues it again. The build's lock keeps a
# delivery still running from being doubled.
STUCK_AFTER = timedelta(minutes=10)


def exports_requeue_stuck(*, now: datetime | None = None) -> list[int]:
    """Queue again exports pending or running for longer than STUCK_AFTER (run by beat). Return their ids."""
    cutoff = (now or timezone.now()) - STUCK_AFTER
    ids = list(Export.objects.filter(status__in=ACTIVE, created_at__lt=cutoff).values_list("pk", flat=True)[:100])
    for export_id in ids:
        jobs.publish_export(export_id)
    return ids


def export_download_name(export: Export) -> str:
    """The file name a download is saved as: <gallery slug>-<kind>-<id>.<format>."""
    return f"{export.gallery.slug}-{export.kind}-{export.pk}.{export.format}"


__all__ = [
    "RESULTS_CAP",
    "ExportError",
    "export_build",
    "export_download_name",
    "export_expires_at",
    "export_is_expired",
    "export_request",
    "exports_purge_expired",
    "exports_requeue_stuck",
    "result_rows",
]
