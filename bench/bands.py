"""Similarity bands on corel1k: do edited copies land in the near-duplicate band, and nothing else?

    .venv/bin/python bench/bands.py --corel ../shared/data/corel1k
    .venv/bin/python bench/bands.py --corel ../shared/data/corel1k --families 100 --loners 300

The corel JPEGs are stored as images of a gallery through the upload service;
--families of them (seeded) also get six edited copies each (tests/copies.py:
JPEG q60, resized to 50 %, 10 % cropped, mirrored, rotated 5°, greyscale),
uploaded as images of the same gallery. Everything is embedded by the
product's pipeline with the configured weights (IMAGESEARCH_VGG16_WEIGHTS,
default here: none, seeded random), the gallery's copy probes are embedded
(services.gallery_probe_copies, IMAGESEARCH_COPY_PROBES images), and the index
is built and its bands fitted by services.gallery_rebuild_index.

Then every copy and every original with copies, plus --loners originals
without, asks "find similar" as the image page does; precision is over every
result in the exact-copy or near-duplicate band, recall the share of copies
whose original is in theirs. The baseline, measured on the same queries, is
what a plain cosine-distance cut reaches (the "max distance" control before
bands): the widest cut whose results are still 99 % copies, chosen knowing the
answers. The database is a fresh test database (SQLite in a temporary folder,
or test_<name> on the server of DATABASE_URL), destroyed at the end.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]  # bench/http.py shadows http
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.calibration import setup_django  # noqa: E402  (after the path fix above)

# Pairs of corel1k originals that are the same scene shot twice (the same animals in the same
# place a moment apart, or one print mirrored), found by looking at the band's false pairs
# (--false-png). The labels call them different pictures; precision is printed both ways.
SAME_SCENE = (
    ("elephants_057", "elephants_q03"),
    ("elephants_075", "elephants_086"),
    ("horses_039", "horses_056"),
    ("horses_051", "horses_066"),
    ("food_025", "food_071"),
)


def _root(name):
    """The corel original a stored image comes from: "horses_039 rotate 5°.jpg" -> "horses_039"."""
    return name.rsplit(".", 1)[0].split(" ", 1)[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corel", required=True, help="folder of the corel1k JPEGs")
    parser.add_argument("--families", type=int, default=100, help="originals that get six edited copies")
    parser.add_argument("--loners", type=int, default=300, help="originals without copies asked as well")
    parser.add_argument("--probes", type=int, default=24, help="IMAGESEARCH_COPY_PROBES for the gallery")
    parser.add_argument("--limit", type=int, default=0, help="only the first N JPEGs (a quick check)")
    parser.add_argument(
        "--vectors",
        help="keep the embedded vectors (and probes) in this .npz by file name; a later run reads them and skips the model",
    )
    parser.add_argument(
        "--whiten-dims", default="", help="also rebuild with these WHITEN_DIM values (comma-separated) and measure each"
    )
    parser.add_argument("--false-png", help="draw the band's false pairs (query | result) into this PNG")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bands-") as tmp:
        setup_django(Path(tmp))
        figures = run(args)
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


def run(args):
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection

    from gallery import embedding, jobs, services
    from gallery.models import CopyProbe, EmbeddingState, Gallery, Image
    from gallery.search import projection
    from tests import copies

    settings.IMAGESEARCH_COPY_PROBES = args.probes
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        user = get_user_model().objects.create_user("bench-bands", password="bench-bands-pw")
        gallery = services.gallery_create(owner=user, title="corel1k copies")
        files = sorted(Path(args.corel).rglob("*.jpg"))
        if args.limit:
            files = files[:: max(1, len(files) // args.limit)][: args.limit]
        rng = np.random.default_rng(7)
        with_copies = set(rng.choice(len(files), size=min(args.families, len(files)), replace=False).tolist())
        t = time.perf_counter()
        families, originals = {}, []
        for i, f in enumerate(files):
            data = f.read_bytes()
            result = services.image_create(gallery=gallery, uploader=user, data=data, name=f.name, queue=False)
            assert result.status == "added", (f, result.message)
            originals.append(result.image.pk)
            if i in with_copies:
                family = {}
                for edit, copy in copies.edited(data):
                    made = services.image_create(
                        gallery=gallery, uploader=user, data=copy, name=f"{f.stem} {edit}.jpg", queue=False
                    )
                    assert made.status == "added", (f, edit, made.message)
                    family[edit] = made.image.pk
                families[result.image.pk] = family
        ids = list(Image.objects.filter(gallery=gallery).order_by("pk").values_list("pk", flat=True))
        print(
            f"== {len(originals)} originals and {len(ids) - len(originals)} copies stored in {time.perf_counter() - t:.0f} s"
        )
        t = time.perf_counter()
        kept = Path(args.vectors) if args.vectors else None
        if kept and kept.exists():
            probes = _restore(kept, gallery)
            print(f"  vectors and {probes} copy probes read from {kept} ({time.perf_counter() - t:.1f} s)")
        else:
            step = jobs.task_size()
            for start in range(0, len(ids), step):
                services.images_embed(image_ids=ids[start : start + step])
                print(f"  embedded {min(start + step, len(ids))}/{len(ids)}", end="\r", flush=True)
            elapsed = time.perf_counter() - t
            print(f"  embedded in {elapsed:.0f} s ({len(ids) / elapsed:.1f} images/s); {embedding.version()}")
            t = time.perf_counter()
            probes = services.gallery_probe_copies(gallery_id=gallery.pk)
            print(f"  {probes} copy probes embedded in {time.perf_counter() - t:.0f} s")
            if kept:
                _keep(kept, gallery)
        t = time.perf_counter()
        build = services.gallery_rebuild_index(gallery_id=gallery.pk)
        Gallery.objects.filter(pk=gallery.pk).update(index_dirty=False)
        fit = build.bands
        print(
            f"  index v{build.version} of {build.item_count} items in {time.perf_counter() - t:.1f} s; bands: "
            f"whitened near-duplicate distance {fit['white']}, hash bits {fit['hash_bits']}, "
            f"probe recall {fit['probe_recall']}, similar <= {fit['similar']:.5f}, related <= {fit['related']:.5f}"
        )
        images = {
            image.pk: image
            for image in Image.objects.select_related("gallery").filter(
                gallery=gallery, embedding_state=EmbeddingState.READY
            )
        }
        with_families = set(families)
        loners = [pk for pk in originals if pk not in with_families][: args.loners]
        t = time.perf_counter()
        got = copies.evaluate(user=user, images_by_pk=images, families=families, loners=loners)
        print(
            f"  near-duplicate band: precision {got['precision']:.4f} ({got['false']} false of {got['near_results']}), "
            f"recall {got['recall']:.4f}; plain cosine cut at precision 0.99: recall {got['baseline']:.4f} "
            f"(ratio {got['recall'] / max(got['baseline'], 1e-9):.2f}x) ({time.perf_counter() - t:.0f} s)"
        )
        for edit, recall in got["recall_by_edit"].items():
            print(f"    {edit:<12} recall {recall:.3f}")
        false_pairs = got.pop("false_pairs")
        same = {frozenset(pair) for pair in SAME_SCENE}
        same_scene = sum(
            1
            for a, b in false_pairs
            if frozenset((_root(images[a].original_name), _root(images[b].original_name))) in same
        )
        got["precision_same_scene_as_copies"] = (got["near_results"] - got["false"] + same_scene) / max(
            1, got["near_results"]
        )
        print(
            f"  counting the {len(SAME_SCENE)} scenes corel1k holds twice as the same picture: "
            f"{same_scene} of the {got['false']} false results are those; precision "
            f"{got['precision_same_scene_as_copies']:.4f}"
        )
        unordered = sorted({tuple(sorted(pair)) for pair in false_pairs})
        print(f"  false pairs: {len(false_pairs)} (query, result), {len(unordered)} pictures pairs:")
        for a, b in unordered:
            print(f"    {images[a].original_name}  ~  {images[b].original_name}")
        if args.false_png:
            _montage(args.false_png, [(images[a], images[b]) for a, b in unordered])
        hashes = _hash_only(images, families)
        for bits, (precision, recall) in hashes.items():
            print(f"  perceptual hash alone, <= {bits} bits: precision {precision:.4f}, recall {recall:.4f}")
        sweep = {}
        for dims in [int(d) for d in args.whiten_dims.split(",") if d]:
            projection.WHITEN_DIM = dims
            services.gallery_rebuild_index(gallery_id=gallery.pk)
            Gallery.objects.filter(pk=gallery.pk).update(index_dirty=False)
            images = {i.pk: i for i in Image.objects.select_related("gallery").filter(gallery=gallery)}
            other = copies.evaluate(user=user, images_by_pk=images, families=families, loners=loners)
            sweep[dims] = {key: other[key] for key in ("precision", "recall", "recall_by_edit")}
            print(f"  WHITEN_DIM {dims}: precision {other['precision']:.4f}, recall {other['recall']:.4f}")
        return {
            "images": len(ids),
            "originals": len(originals),
            "families": len(families),
            "loners": len(loners),
            "probes": probes,
            "probe_rows": CopyProbe.objects.filter(gallery=gallery).count(),
            "embedding": embedding.version(),
            "bands": {key: fit[key] for key in ("white", "hash_bits", "probe_recall", "similar", "related", "probes")},
            **got,
            "hash_only": {str(bits): {"precision": p, "recall": r} for bits, (p, r) in hashes.items()},
            "whiten_dims": sweep,
        }
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def _montage(path, pairs, side=160):
    """Draw each pair side by side, one pair per row, from the stored thumbnails."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    canvas = PILImage.new("RGB", (2 * side + 10, max(1, len(pairs)) * (side * 3 // 4 + 18)), "white")
    draw = ImageDraw.Draw(canvas)
    for row, pair in enumerate(pairs):
        top = row * (side * 3 // 4 + 18)
        for col, image in enumerate(pair):
            with image.thumbnail.open("rb") as fh:
                thumb = PILImage.open(fh).convert("RGB")
                thumb.thumbnail((side, side * 3 // 4))
            canvas.paste(thumb, (col * (side + 10), top))
            draw.text((col * (side + 10), top + side * 3 // 4 + 2), image.original_name[:28], fill="black")
    canvas.save(path)


def _keep(path, gallery):
    """Save the gallery's vectors by image name, and its probes by their image's name."""
    from gallery.models import CopyProbe, Image

    names, vecs = zip(*Image.objects.filter(gallery=gallery).values_list("original_name", "embedding"))
    rows = list(
        CopyProbe.objects.filter(gallery=gallery).values_list(
            "image__original_name", "transform", "vector", "distance", "hash_distance"
        )
    )
    np.savez(
        path,
        names=np.array(names),
        vectors=np.stack([np.frombuffer(bytes(b), "<f4") for b in vecs]),
        probe_names=np.array([r[0] for r in rows]),
        probe_transforms=np.array([r[1] for r in rows]),
        probe_vectors=np.stack([np.frombuffer(bytes(r[2]), "<f4") for r in rows]),
        probe_numbers=np.array([(r[3], r[4]) for r in rows], dtype=np.float64),
    )


def _restore(path, gallery):
    """Write saved vectors and probes into the gallery's rows, as the pipeline and the probe service would have."""
    from gallery import embedding
    from gallery.models import CopyProbe, EmbeddingState, Image
    from gallery.vectors import pack

    saved = np.load(path)
    by_name = dict(zip(saved["names"].tolist(), saved["vectors"], strict=True))
    version = embedding.version()
    pk_of = {}
    for image in Image.objects.filter(gallery=gallery):
        pk_of[image.original_name] = image.pk
        Image.objects.filter(pk=image.pk).update(
            embedding=pack(by_name[image.original_name]),
            embedding_state=EmbeddingState.READY,
            embedding_version=version,
            embedded_at=image.created_at,
        )
    CopyProbe.objects.bulk_create(
        CopyProbe(
            gallery=gallery,
            image_id=pk_of[name],
            embedding_version=version,
            transform=transform,
            vector=pack(vec),
            distance=float(numbers[0]),
            hash_distance=int(numbers[1]),
        )
        for name, transform, vec, numbers in zip(
            saved["probe_names"].tolist(),
            saved["probe_transforms"].tolist(),
            saved["probe_vectors"],
            saved["probe_numbers"],
            strict=True,
        )
    )
    return len(saved["probe_names"])


def _hash_only(images, families, max_bits=8):
    """{bits: (precision, recall)} of "hash distance <= bits" alone, over the same families, every image a query."""
    from gallery.search import bands

    pks = np.array(sorted(images), dtype=np.int64)
    plain = np.array([images[pk].phash or 0 for pk in pks], dtype=np.int64)
    family_of = {}
    for original, family in families.items():
        for pk in (original, *family.values()):
            family_of[pk] = original
    label = np.array([family_of.get(int(pk), -int(pk)) for pk in pks])  # a loner is its own family
    out = {}
    for bits in range(max_bits + 1):
        tp = fp = found = 0
        for i, pk in enumerate(pks):
            image = images[int(pk)]
            if image.phash is None:
                continue
            d = bands.hash_distances((image.phash, image.phash_mirror), plain)
            d[i] = 64
            match = d <= bits
            tp += int(np.count_nonzero(match & (label == label[i])))
            fp += int(np.count_nonzero(match & (label != label[i])))
            if int(pk) in family_of and family_of[int(pk)] != int(pk):  # a copy: is its original matched?
                found += bool(match[np.searchsorted(pks, family_of[int(pk)])])
        copies_total = sum(len(f) for f in families.values())
        out[bits] = (tp / max(1, tp + fp), found / max(1, copies_total))
    return out


if __name__ == "__main__":
    main()
