"""Load a folder of images into a gallery: `manage.py import_images PATH --gallery SLUG [--owner USER] [--compare]`.

Walks PATH recursively, stores every image of a usual type through the same
service as an upload (validation, thumbnail, sha256), skips files already in the
gallery, and queues embedding in batches while it runs, so workers start at once.
Added files that look like an image already in the gallery (perceptual hash)
are listed in the summary. --compare adds nothing and reports, per file,
whether it is already in the gallery, looks like one of its images (by perceptual
hash, then by content: the file is embedded here and the gallery asked for its
near-duplicates), or is new.
"""

import hashlib
import os
import re
import sys
from collections import Counter
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse
from tqdm import tqdm

from gallery import embedding, jobs, services
from gallery.models import Gallery, Image
from gallery.search import queries

EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".tif", ".tiff", ".bmp"}
SHOW_REJECTED = 50


def image_files(root):
    """Yield image files under `root` (a file or a folder), sorted, hidden entries left out."""
    root = Path(root)
    if root.is_file():
        yield root
        return
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in EXTENSIONS:
                yield Path(folder) / name


class Command(BaseCommand):
    help = "Import a folder of images (recursively) into a gallery and queue their embedding."

    def add_arguments(self, parser):
        parser.add_argument("path", help="A folder (walked recursively) or a single image file.")
        parser.add_argument("--gallery", required=True, metavar="SLUG", help="The gallery to add the images to.")
        parser.add_argument(
            "--owner",
            metavar="USER",
            help="Username owning the gallery; the gallery is created (private) if it does not exist.",
        )
        parser.add_argument("--no-progress", action="store_true", help="Do not draw the progress bar.")
        parser.add_argument(
            "--compare",
            action="store_true",
            help="Add nothing: report which files are already in the gallery, look like an image of it, or are new.",
        )

    def handle(self, *args, path, gallery, owner, no_progress, compare=False, **options):
        root = Path(path)
        if not root.exists():
            raise CommandError(f"{root} does not exist.")
        slug = gallery
        gallery = self._gallery(slug, owner)
        files = list(image_files(root))
        if not files:
            self.stdout.write(f"No image files (JPEG, PNG, GIF, WebP, TIFF, BMP) under {root}.")
            return

        if compare:
            self._compare(gallery, root, files, no_progress)
            return
        # Hashes already in the gallery: a re-run skips known files without decoding them.
        known = set(Image.objects.filter(gallery=gallery).values_list("sha256", flat=True))
        added, duplicates, rejected, queue, alike = 0, 0, [], [], []
        lookup = services.HashLookup(gallery)
        step = jobs.task_size()
        bar = tqdm(files, unit="img", file=sys.stderr, disable=no_progress, dynamic_ncols=True)
        for file in bar:
            shown = str(file.relative_to(root)) if file != root else file.name
            try:
                data = file.read_bytes()
            except OSError as exc:
                rejected.append((shown, f"cannot be read ({exc.strerror or exc})"))
                continue
            if hashlib.sha256(data).hexdigest() in known:
                duplicates += 1
                continue
            try:
                result = services.image_create(
                    gallery=gallery, uploader=gallery.owner, data=data, name=file.name, queue=False, lookup=lookup
                )
            except services.UploadError as exc:
                rejected.append((shown, str(exc)))
                continue
            if result.status == "added":
                added += 1
                known.add(result.image.sha256)
                queue.append(result.image.pk)
                if result.looks_like is not None:
                    alike.append((shown, result.looks_like))
                if len(queue) >= step:
                    services.images_queue_embedding(image_ids=queue)
                    queue = []
            elif result.status == "duplicate":
                duplicates += 1
            else:
                rejected.append((shown, result.message))
            bar.set_postfix(added=added, dup=duplicates, rejected=len(rejected), refresh=False)
        bar.close()
        if queue:
            services.images_queue_embedding(image_ids=queue)

        self.stdout.write(
            f"Gallery “{gallery.slug}”: {added} added, {duplicates} duplicate(s) skipped, "
            f"{len(rejected)} rejected, of {len(files)} file(s)."
        )
        for shown, reason in rejected[:SHOW_REJECTED]:
            self.stdout.write(f"  rejected {shown}: {reason}")
        if len(rejected) > SHOW_REJECTED:
            self.stdout.write(f"  ... and {len(rejected) - SHOW_REJECTED} more rejected file(s).")
        if alike:
            self.stdout.write(
                f"{len(alike)} added file(s) look like images already in the gallery; review them on "
                f"{reverse('gallery_duplicates', args=[gallery.slug])} once the index is rebuilt:"
            )
            for shown, like in alike[:SHOW_REJECTED]:
                self.stdout.write(
                    f"  {shown} looks like “{like.image.original_name}” (distance {like.bits} of 63 hash bits)"
                )
            if len(alike) > SHOW_REJECTED:
                self.stdout.write(f"  ... and {len(alike) - SHOW_REJECTED} more.")
        if added:
            self.stdout.write(
                f"Embedding of {added} image(s) is queued; a worker on the 'embed' queue processes it "
                f"(progress on the gallery page)."
            )

    def _compare(self, gallery, root, files, no_progress):
        def read():
            for file in tqdm(files, unit="img", file=sys.stderr, disable=no_progress, dynamic_ncols=True):
                shown = str(file.relative_to(root)) if file != root else file.name
                try:
                    yield shown, file.read_bytes()
                except OSError as exc:
                    yield shown, b""  # judged unreadable below
                    self.stderr.write(f"{shown}: cannot be read ({exc.strerror or exc})")

        compared = services.files_compare(
            gallery=gallery,
            files=read(),
            max_pixels=settings.IMAGESEARCH_MAX_PIXELS,
            # This process loads the model, of the version the gallery serves.
            embed=lambda data: queries.outside_vector(data, version=embedding.served_version(gallery), in_process=True),
        )
        results = compared.results
        counts = Counter(r.status for r in results)
        self.stdout.write(
            f"Gallery “{gallery.slug}”, nothing added: {counts['new']} new, {counts['looks_like']} look-alike(s), "
            f"{counts['copy']} already in it, {counts['rejected']} unreadable, of {len(results)} file(s)."
        )
        for r in results:
            if r.status != "new":
                self.stdout.write(f"  {r.status:<10} {r.name}: {r.message}")
        if compared.note:
            self.stdout.write(compared.note)

    def _gallery(self, slug, owner):
        found = Gallery.objects.filter(slug=slug).select_related("owner").first()
        user = None
        if owner:
            user = get_user_model().objects.filter(username=owner).first()
            if user is None:
                raise CommandError(f"No user named {owner!r}.")
        if found is not None:
            if user is not None and found.owner_id != user.pk:
                raise CommandError(f"Gallery {slug!r} belongs to {found.owner.username}, not {owner}.")
            return found
        if user is None:
            raise CommandError(f"No gallery {slug!r}. Pass --owner USER to create it.")
        if not re.fullmatch(r"[-a-z0-9_]{1,80}", slug):
            raise CommandError(f"{slug!r} is not a usable slug: lowercase letters, digits, - and _ only.")
        created = services.gallery_create(owner=user, title=slug)
        if created.slug != slug:  # the title slugified differently: keep the slug that was asked for
            Gallery.objects.filter(pk=created.pk).update(slug=slug)
            created.slug = slug
        self.stdout.write(f"Created private gallery “{slug}” owned by {user.username}.")
        return created
