"""Edited copies of pictures, and how well the near-duplicate band finds them: shared by
tests/test_bands_model.py (generated photos) and bench/bands.py (corel1k).

The edits are fixed, not drawn: the product's own copy probes (imaging.copies)
draw theirs from ranges, so what is measured here is not what was fitted.
"""

import io

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps

from gallery.search import engine

EDITS = ("jpeg q60", "resize 50%", "crop 10%", "mirror", "rotate 5°", "greyscale")


def _jpeg(img, quality=90):
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def edited(data):
    """Return [(edit, JPEG bytes)] of an encoded picture, one per EDITS."""
    img = PILImage.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    dx, dy = int(w * 0.05), int(h * 0.05)
    return list(
        zip(
            EDITS,
            [
                _jpeg(img, quality=60),
                _jpeg(img.resize((w // 2, h // 2), PILImage.Resampling.BILINEAR)),
                _jpeg(img.crop((dx, dy, w - dx, h - dy))),
                _jpeg(ImageOps.mirror(img)),
                _jpeg(img.rotate(5, resample=PILImage.Resampling.BILINEAR)),
                _jpeg(ImageOps.grayscale(img).convert("RGB")),
            ],
            strict=True,
        )
    )


def evaluate(*, user, images_by_pk, families, loners=()):
    """Measure the near-duplicate band with "find similar" of each copy and original, as the pages ask.

    `families` maps an original's pk to {edit: copy pk}; `loners` are pks of
    originals without copies (any near-duplicate they get is a false one).
    Returns {"precision", "recall", "recall_by_edit", "near_results", "false",
    "baseline"}: precision over every result in the near-duplicate band; recall,
    the share of copies whose original is in their band; the baseline, the
    recall a plain cosine-distance threshold reaches at precision >= 0.99 on the
    same queries (the threshold chosen knowing the answers, in its favour).
    """
    tp = fp = 0
    false_pairs = set()  # (query pk, result pk) in the band that are not the same picture
    hits = {edit: [] for edit in EDITS}
    scored = []  # (distance, is a copy of the same picture) of every plain result, for the baseline
    to_original = []  # each copy's distance to its original by plain cosine (inf: not among its results)
    members_of, copy_of = {}, {}  # pk -> the pks of its picture; copy pk -> (original pk, edit)
    for original, family in families.items():
        members = {original, *family.values()}
        for pk in members:
            members_of[pk] = members
        for edit, copy_pk in family.items():
            copy_of[copy_pk] = (original, edit)
    queries = [(pk, members_of[pk]) for pk in members_of] + [(pk, {pk}) for pk in loners]
    for pk, members in queries:
        image = images_by_pk[pk]
        near = engine.similar_images(user=user, image=image, k=100)
        found = {m.image.pk for m in near if m.band in ("exact", "near")}
        tp += len(found & members)
        fp += len(found - members)
        false_pairs.update((pk, other) for other in found - members)
        plain = engine.search_vector(
            user=user, gallery=image.gallery, vector=image.vector, k=len(members) + 20, exclude_id=pk
        )
        scored.extend((m.distance, m.image.pk in members) for m in plain)
        if pk in copy_of:
            original, edit = copy_of[pk]
            hits[edit].append(original in found)
            to_original.append(next((m.distance for m in plain if m.image.pk == original), np.inf))
    recall = float(np.mean([h for edit in EDITS for h in hits[edit]]))
    return {
        "precision": tp / max(1, tp + fp),
        "recall": recall,
        "recall_by_edit": {edit: float(np.mean(hits[edit])) for edit in EDITS},
        "near_results": tp + fp,
        "false": fp,
        "baseline": _baseline(scored, np.array(to_original)),
        "false_pairs": sorted(false_pairs),
    }


def _baseline(scored, to_original):
    """Share of copies within the widest cosine-distance threshold whose results are >= 0.99 copies."""
    widest, tp, fp = -1.0, 0, 0
    for distance, same in sorted(scored):
        tp, fp = tp + same, fp + (not same)
        if tp / (tp + fp) >= 0.99:
            widest = distance
    return float(np.mean(to_original <= widest)) if len(to_original) else 0.0
