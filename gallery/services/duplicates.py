"""Near-duplicates: a gallery's groups after each build, the owner's decisions on them, and look-alikes at upload.

Groups are derived from an index version (gallery.analysis.duplicates) and
stored per build (GroupingRun, DuplicateGroup): the review page reads the
newest. A decision ("keep all", "not duplicates", kept at upload) is stored per
pair of images, and later runs leave those pairs out, so a group never comes
back as it was, while a new look-alike of it still does.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from django.db import transaction
from django.db.models import Q
from django.urls import reverse

from gallery import embedding, vectors
from gallery.analysis import duplicates
from gallery.embedding import imaging
from gallery.models import (
    DuplicateDecision,
    DuplicateGroup,
    DuplicateGroupMember,
    Gallery,
    GroupingRun,
    Image,
    IndexBuild,
    ModerationState,
)
from gallery.search import bands, cache, engine, queries, store
from gallery.selectors import open_groups
from gallery.services.trash import images_trash

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

ACTIONS = ("trash_others", "keep_all", "not_duplicates")
ROWS_PER_QUERY = 2000  # pks per IN (...) when reading grouped images' metadata


def keeper_key(image: Image) -> tuple[int, int, float, int]:
    """Sort key of the suggested keeper, best first: most pixels, then largest file, then oldest."""
    return (-image.width * image.height, -image.byte_size, image.created_at.timestamp(), image.pk)


def _mirror_hashes(gallery_id: int, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The mirror hash of each indexed image, in position order (NO_HASH where unknown or gone)."""
    mirrors = np.full(len(ids), imaging.NO_HASH, dtype=np.int64)
    rows = Image.objects.filter(gallery_id=gallery_id, phash_mirror__isnull=False).values_list("pk", "phash_mirror")
    for pk, mirror in rows.iterator(chunk_size=5000):
        at = int(np.searchsorted(ids, pk))
        if at < len(ids) and ids[at] == pk:
            mirrors[at] = imaging.NO_HASH if mirror is None else mirror
    return mirrors


def decided_pairs(*, gallery_id: int) -> list[tuple[int, int]]:
    return list(DuplicateDecision.objects.filter(gallery_id=gallery_id).values_list("low_id", "high_id"))


def gallery_find_duplicates(*, gallery_id: int, build_id: int) -> GroupingRun | None:
    """Find the near-duplicate groups of one ready build and make them the gallery's groups.

    Safe to run twice: a build already grouped returns its run. A build that
    is no longer the gallery's current one is skipped (None): its successor
    queues its own run.
    """
    build = IndexBuild.objects.filter(pk=build_id, gallery_id=gallery_id, status=IndexBuild.Status.READY).first()
    gallery = Gallery.objects.filter(pk=gallery_id).first()
    if build is None or gallery is None or gallery.current_index_id != build.pk:
        return None
    done = GroupingRun.objects.filter(build=build).first()
    if done is not None:
        return done
    started = time.monotonic()
    fitted = bands.Fitted.from_json(build.bands) or bands.Fitted.hashes_only()
    try:
        loaded = cache.load(store.ref_for(build))
        found = duplicates.find(
            loaded,
            fitted,
            _mirror_hashes(gallery_id, np.asarray(loaded.ids)),
            n_trees=build.n_trees,
            decided=decided_pairs(gallery_id=gallery_id),
            scratch_dir=str(store.local_dir(gallery_id)),  # beside the index: room for its size, not RAM
        )
    except store.IndexUnavailable as exc:
        run = GroupingRun.objects.create(
            gallery_id=gallery_id,
            build=build,
            status=GroupingRun.Status.FAILED,
            item_count=build.item_count,
            duration_seconds=time.monotonic() - started,
            error=f"The index files could not be read: {exc}",
        )
        return run
    groups = _groups_with_keepers(loaded, found.groups)
    cache.evict(gallery_id)  # a worker keeps no versions open between builds
    if GroupingRun.objects.filter(build=build).exists():  # another delivery finished first
        return GroupingRun.objects.get(build=build)
    with transaction.atomic():
        run = GroupingRun.objects.create(
            gallery_id=gallery_id,
            build=build,
            item_count=len(loaded.ids),
            pair_count=len(found.pairs),
            group_count=len(groups),
            grouped_images=sum(len(members) for _keeper, members in groups),
            duration_seconds=time.monotonic() - started,
        )
        _store_groups(gallery_id, run, groups)
        DuplicateGroup.objects.filter(gallery_id=gallery_id).exclude(run=run).delete()
    logger.info(
        "gallery %s v%s: %d near-duplicate group(s) of %d image(s) in %.1f s",
        gallery_id,
        build.version,
        run.group_count,
        run.grouped_images,
        run.duration_seconds,
    )
    return run


Member = tuple[int, float, int]  # (image pk, cosine distance to the keeper, hash bits to the keeper)


def _groups_with_keepers(
    loaded: store.Loaded, groups: Sequence[npt.NDArray[np.int64]]
) -> list[tuple[int, list[Member]]]:
    """For each group (item positions), its suggested keeper's pk and its members still in the gallery."""
    pks = [int(loaded.ids[p]) for g in groups for p in g]
    images: dict[int, Image] = {}
    for start in range(0, len(pks), ROWS_PER_QUERY):
        chunk = pks[start : start + ROWS_PER_QUERY]
        rows = Image.objects.filter(pk__in=chunk).only("pk", "width", "height", "byte_size", "created_at")
        images.update((image.pk, image) for image in rows)
    out: list[tuple[int, list[Member]]] = []
    for positions in groups:
        alive = [int(p) for p in positions if int(loaded.ids[p]) in images]
        if len(alive) < 2:
            continue  # deleted since the build
        best = min(alive, key=lambda p: keeper_key(images[int(loaded.ids[p])]))
        distance = vectors.cosine_distances(np.asarray(loaded.vectors[alive]), loaded.vectors[best])
        bits = imaging.hash_distance(loaded.hashes[alive], loaded.hashes[best])
        members = [
            (int(loaded.ids[p]), 0.0 if p == best else max(0.0, float(d)), int(b))
            for p, d, b in zip(alive, distance, bits, strict=True)
        ]
        out.append((int(loaded.ids[best]), members))
    return out


def _store_groups(gallery_id: int, run: GroupingRun, groups: Sequence[tuple[int, list[Member]]]) -> None:
    batch = 1000
    for start in range(0, len(groups), batch):
        part = groups[start : start + batch]
        rows = DuplicateGroup.objects.bulk_create(
            [
                DuplicateGroup(
                    gallery_id=gallery_id,
                    run=run,
                    keeper_id=keeper,
                    size=len(members),
                    max_distance=max(d for _pk, d, _b in members),
                )
                for keeper, members in part
            ]
        )
        DuplicateGroupMember.objects.bulk_create(
            [
                DuplicateGroupMember(group=row, image_id=pk, distance=d, hash_bits=min(b, 64))
                for row, (_keeper, members) in zip(rows, part, strict=True)
                for pk, d, b in members
            ],
            batch_size=batch,
        )


def _decide(gallery_id: int, groups: Iterable[Iterable[int]], kind: str, actor: User | None) -> int:
    """Remember every pair within each group of image pks (low pk first); return how many pairs."""
    pairs = {(a, b) for pks in groups for a, b in combinations(sorted(set(pks)), 2)}
    DuplicateDecision.objects.bulk_create(
        [DuplicateDecision(gallery_id=gallery_id, low_id=a, high_id=b, kind=kind, decided_by=actor) for a, b in pairs],
        ignore_conflicts=True,
        batch_size=1000,
    )
    return len(pairs)


class ResolveError(ValueError):
    """A resolution that cannot apply (an unknown action, a keeper from outside the group): the message says why."""


def _check(action: str) -> None:
    if action not in ACTIONS:
        raise ResolveError(f"Unknown action “{action}”: choose one of {', '.join(ACTIONS)}.")


def _resolve(
    gallery_id: int, resolutions: Sequence[tuple[DuplicateGroup, Image, list[Image]]], actor: User | None, action: str
) -> int:
    """Apply one action to groups given as (group, keeper, members); return how many images went to the trash."""
    trashed = 0
    with transaction.atomic():
        if action == "trash_others":
            others = [
                (image, keeper) for _group, keeper, members in resolutions for image in members if image != keeper
            ]
            trashed = len(
                images_trash(
                    images=[image for image, _keeper in others],
                    actor=actor,
                    reasons={image.pk: f"Duplicate of “{keeper.original_name}”" for image, keeper in others},
                )
            )
        else:
            kind = DuplicateDecision.Kind.KEEP_ALL if action == "keep_all" else DuplicateDecision.Kind.NOT_DUPLICATES
            _decide(
                gallery_id, [[image.pk for image in members] for _group, _keeper, members in resolutions], kind, actor
            )
        DuplicateGroup.objects.filter(pk__in=[group.pk for group, _keeper, _members in resolutions]).delete()
    return trashed


def group_resolve(*, group: DuplicateGroup, actor: User | None, action: str, keeper_id: int | None = None) -> int:
    """Resolve one group: trash all but the keeper, or remember its images as "keep all" / "not duplicates".

    Return how many images went to the trash. The group is gone afterwards.
    """
    _check(action)
    members = list(Image.objects.filter(pk__in=group.members.values("image_id")))
    keeper_id = group.keeper_id if keeper_id is None else keeper_id
    keeper = next((image for image in members if image.pk == keeper_id), None)
    if keeper is None and action == "trash_others":
        raise ResolveError("The image to keep must be one of the group's images.")
    return _resolve(group.gallery_id, [(group, keeper or members[0], members)], actor, action)


RESOLVE_BATCH = 500  # groups resolved per transaction by groups_resolve_all


def groups_resolve_all(*, gallery: Gallery, actor: User | None, action: str) -> tuple[int, int]:
    """Resolve every open group of the gallery the same way, each with its suggested keeper. Return (groups, trashed).

    Groups are read and written RESOLVE_BATCH at a time: a few queries per batch, not per group.
    """
    _check(action)
    groups = trashed = 0
    while True:
        batch = list(open_groups(gallery=gallery).order_by("id")[:RESOLVE_BATCH])
        if not batch:
            return groups, trashed
        members: dict[int, list[Image]] = {group.pk: [] for group in batch}
        rows = DuplicateGroupMember.objects.filter(group__in=batch).select_related("image")
        for row in rows:
            members[row.group_id].append(row.image)
        resolutions = []
        for group in batch:
            alive = members[group.pk]
            # The suggested keeper, or the best one left if it has gone since.
            keeper = next((image for image in alive if image.pk == group.keeper_id), None) or min(alive, key=keeper_key)
            resolutions.append((group, keeper, alive))
        trashed += _resolve(gallery.pk, resolutions, actor, action)
        groups += len(batch)


# --- Look-alikes at upload --------------------------------------------------


@dataclass(frozen=True)
class LookAlike:
    image: Image
    bits: int  # perceptual-hash distance (of 63 bits), the picture or its mirror image

    @property
    def message(self) -> str:
        return f"Looks like “{self.image.original_name}” (distance {self.bits} of 63 hash bits)."

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.image.pk,
            "name": self.image.original_name,
            "url": self.image.get_absolute_url(),
            "thumbnail": reverse("image_thumb", args=[self.image.pk]),
            "distance": self.bits,
        }


class HashLookup:
    """A gallery's perceptual hashes, read once for a batch of uploads: which existing image does a new file look like?

    What a find-similar page calls a near-duplicate by hash (within the
    bands' hash_bits, the picture or its mirror image). A file is compared
    before it is embedded, so crops and rotations, which only the embedding
    tells, are left to the groups of the next build. Files added through the
    lookup are compared with the rest of the batch too.
    """

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery
        self.bits = bands.HASH_BITS
        rows = (
            Image.objects.filter(gallery=gallery, phash__isnull=False)
            .exclude(moderation_state=ModerationState.REJECTED)
            .exclude(phash=imaging.NO_HASH)
        )
        # The current index holds most hashes already, in this process's memory:
        # read from the database only the images it does not hold.
        base_pks = base_hashes = np.zeros(0, dtype=np.int64)
        build = gallery.current_build()
        if build is not None:
            try:
                loaded = cache.load(store.ref_for(build))
            except store.IndexUnavailable:
                pass
            else:
                known = np.asarray(loaded.hashes) != imaging.NO_HASH
                base_pks, base_hashes = np.asarray(loaded.ids)[known], np.asarray(loaded.hashes)[known]
                rows = rows.filter(Q(embedded_at__isnull=True) | Q(embedded_at__gt=build.snapshot_at))
        pks: list[int] = []
        hashes: list[int] = []
        for pk, phash in rows.values_list("pk", "phash").iterator(chunk_size=5000):
            pks.append(pk)
            hashes.append(imaging.NO_HASH if phash is None else phash)
        self.pks = np.concatenate([base_pks, np.asarray(pks, dtype=np.int64)])
        self.hashes = np.concatenate([base_hashes, np.asarray(hashes, dtype=np.int64)])

    def match(self, phash: int | None, mirror: int | None) -> LookAlike | None:
        """Return the nearest existing image within the bits, or None."""
        if phash is None or phash == imaging.NO_HASH or not len(self.pks):
            return None
        distance = bands.hash_distances((phash, mirror if mirror is not None else phash), self.hashes)
        close = np.flatnonzero(distance <= self.bits)
        for at in close[np.argsort(distance[close], kind="stable")].tolist():
            image = Image.objects.filter(pk=int(self.pks[at])).first()
            if image is not None:  # not deleted or trashed since the lookup was read
                return LookAlike(image, int(distance[at]))
        return None

    def add(self, image: Image) -> None:
        if image.phash is not None and image.phash != imaging.NO_HASH:
            self.pks = np.append(self.pks, image.pk)
            self.hashes = np.append(self.hashes, image.phash)


def upload_keep(*, image: Image, like: Image, actor: User | None) -> None:
    """The owner keeps an upload that looked like `like`: never propose the two as duplicates."""
    _decide(image.gallery_id, [[image.pk, like.pk]], DuplicateDecision.Kind.KEEP, actor)


def upload_skip(*, image: Image, like: Image | None, actor: User | None) -> None:
    """The owner skips an upload that looked like `like`: it goes to the trash."""
    reason = f"Skipped at upload: looked like “{like.original_name}”" if like else "Skipped at upload"
    images_trash(images=[image], actor=actor, reason=reason)


@dataclass(frozen=True)
class Comparison:
    """How one outside file compares with a gallery: "copy" (the same file), "looks_like", "new" or "rejected"."""

    name: str
    status: str
    message: str = ""
    image: Image | None = None
    bits: int | None = None  # a look-alike by perceptual hash: the Hamming distance
    distance: float | None = None  # a look-alike by content: the cosine distance

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"name": self.name, "status": self.status, "message": self.message}
        if self.image is not None:
            data["image"] = {
                "id": self.image.pk,
                "name": self.image.original_name,
                "url": self.image.get_absolute_url(),
                "thumbnail": reverse("image_thumb", args=[self.image.pk]),
            }
        if self.bits is not None:
            data["hash_bits"] = self.bits
        if self.distance is not None:
            data["distance"] = round(self.distance, 6)
        return data


@dataclass(frozen=True)
class Compared:
    results: list[Comparison]
    note: str = ""  # why some files were compared by hash alone


Embedder = Callable[[bytes], queries.QueryVector]


def files_compare(
    *,
    gallery: Gallery,
    files: Iterable[tuple[str, bytes]],
    max_pixels: int,
    embed: Embedder | None = queries.outside_vector,
    content_limit: int | None = None,
) -> Compared:
    """Compare a batch of files with the gallery without adding any: the same file, a look-alike, or new.

    Each file is judged alone; an unreadable one is "rejected" with the reason.
    A look-alike is told as on a results page: first by perceptual hash,
    then, for the others, by embedding the file (`embed`, the query worker by
    default) and asking the gallery for its copies (band "near"), for at most
    `content_limit` files (None: all). Without the model (no query worker, no
    weights) the rest are compared by hash alone, and the note says why.
    """
    if embed is queries.outside_vector:  # in the version the gallery serves (the previous one during a switch)
        embed = functools.partial(queries.outside_vector, version=embedding.served_version(gallery))
    lookup = HashLookup(gallery)
    out: list[Comparison] = []
    note = ""
    embedded = 0
    for name, data in files:
        digest = hashlib.sha256(data).hexdigest()
        same = Image.objects.filter(gallery=gallery, sha256=digest).first()
        if same is not None:
            out.append(Comparison(name, "copy", f"Already in this gallery as “{same.original_name}”.", same))
            continue
        try:
            imaging.inspect(data, max_pixels)
            phash, mirror = imaging.hashes_of(data)
        except imaging.InvalidImage as exc:
            out.append(Comparison(name, "rejected", str(exc)))
            continue
        like = lookup.match(phash, mirror)
        if like is not None:
            out.append(Comparison(name, "looks_like", like.message, like.image, bits=like.bits))
            continue
        if embed is None or (content_limit is not None and embedded >= content_limit):
            if embed is not None and not note:
                note = f"Only the first {content_limit} files were compared by content; the others by hash alone."
            out.append(Comparison(name, "new", "Not in this gallery."))
            continue
        try:
            query = embed(data)
        except queries.QueryUnavailable as exc:
            note, embed = f"Compared by hash alone: {exc}", None
            out.append(Comparison(name, "new", "Not in this gallery."))
            continue
        except queries.QueryImageError as exc:
            out.append(Comparison(name, "rejected", str(exc)))
            continue
        embedded += 1
        found = engine.search_results(
            user=gallery.owner, gallery=gallery, vector=query.vector, k=1, band="near", query_hashes=query.hashes
        ).matches
        alike = Image.objects.filter(pk=found[0].image.pk).first() if found else None
        if alike is not None:
            distance = found[0].distance
            message = f"Looks like “{alike.original_name}” (distance {distance:.4f}, by content)."
            out.append(Comparison(name, "looks_like", message, alike, distance=distance))
        else:
            out.append(Comparison(name, "new", "Not in this gallery."))
    return Compared(out, note)
