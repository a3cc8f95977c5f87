"""Storage fails while a file is written: the person is told, nothing half-made remains.

Two real failures of the local disk storage: a full filesystem (a small tmpfs
mounted as the media directory, so the write stops half-way with ENOSPC), and
a directory that cannot be created. Each goes through the upload page and the
JSON API; afterwards there is no image row and no stored file (whole or
partial) for the failed upload, and once the fault is gone uploads work again.
"""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from django.urls import reverse
from PIL import Image as PILImage

from gallery import services
from gallery.models import Image
from tests import imagegen, multipart

pytestmark = pytest.mark.django_db


def _files_under(root):
    return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob("*") if p.is_file())


def _noise_png(seed, side):
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)  # (side, side, 3)
    return imagegen.encode(PILImage.fromarray(pixels), "PNG")


def _post(client, route, gallery, name, data):
    body, content_type = multipart.encode([(name, data, "image/png")])
    if route == "api":
        response = client.post(reverse("api_upload", args=[gallery.slug]), body, content_type=content_type)
        assert response.status_code == 200
        (result,) = response.json()["results"]
        return result["status"], result["message"]
    response = client.post(reverse("gallery_upload", args=[gallery.slug]), body, content_type=content_type, follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    if any("added" in m for m in shown):
        return "added", ""
    (message,) = [m for m in shown if m.startswith(f"{name}: ")]
    return "rejected", message


@pytest.fixture
def small_disk(tmp_path, settings):
    """Media on a 1 MiB tmpfs: a real filesystem that fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(mount)}},
    }
    settings.MEDIA_ROOT = mount
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def _fill(mount, leave_bytes):
    """Fill the filesystem until about `leave_bytes` are free."""
    stat = os.statvfs(mount)
    free = stat.f_bavail * stat.f_frsize
    (Path(mount) / "filler.bin").write_bytes(b"\0" * max(0, free - leave_bytes))


@pytest.mark.parametrize("route", ["page", "api"])
def test_a_disk_that_fills_up_mid_write_leaves_no_row_and_no_partial_file(client, owner, small_disk, route):
    gallery = services.gallery_create(owner=owner, title="Full disk")
    client.force_login(owner)
    big = _noise_png(1, 300)  # ~270 KB: cannot fit in what is left
    _fill(small_disk, leave_bytes=64 * 1024)

    status, message = _post(client, route, gallery, "big.png", big)

    assert status == "rejected"
    assert "could not be stored" in message and "nothing was saved" in message
    assert not Image.objects.filter(gallery=gallery).exists()
    assert _files_under(small_disk) == ["filler.bin"], "no whole or partial file left behind"

    (small_disk / "filler.bin").unlink()  # space is back: the same upload now works
    status, _ = _post(client, route, gallery, "big.png", big)
    assert status == "added"
    image = Image.objects.get(gallery=gallery)
    assert sorted(_files_under(small_disk)) == sorted([image.file.name, image.thumbnail.name])


@pytest.mark.parametrize("route", ["page", "api"])
def test_when_the_original_is_stored_but_the_thumbnail_cannot_be_nothing_half_made_remains(
    client, owner, small_disk, route
):
    gallery = services.gallery_create(owner=owner, title="Full disk")
    client.force_login(owner)
    data = _noise_png(2, 160)  # ~75 KB original; its JPEG thumbnail is ~20 KB more
    _fill(small_disk, leave_bytes=len(data) + 4096)

    status, message = _post(client, route, gallery, "tight.png", data)

    assert status == "rejected" and "could not be stored" in message
    assert not Image.objects.filter(gallery=gallery).exists()
    assert _files_under(small_disk) == ["filler.bin"], "the stored original was removed again"


@pytest.mark.parametrize("route", ["page", "api"])
def test_a_media_directory_that_cannot_be_created_fails_the_upload_cleanly(client, owner, isolated_files, route):
    gallery = services.gallery_create(owner=owner, title="Broken disk")
    client.force_login(owner)
    media = isolated_files / "media"
    media.mkdir(parents=True, exist_ok=True)
    # A file where the thumbnails' directory should be: the original is written, the thumbnail is not.
    (media / "thumbs").write_bytes(b"in the way")

    status, message = _post(client, route, gallery, "photo.png", imagegen.encode(imagegen.scene(5), "PNG"))

    assert status == "rejected" and "could not be stored" in message
    assert not Image.objects.filter(gallery=gallery).exists()
    assert _files_under(media) == ["thumbs"], "the original written before the failure was removed"

    (media / "thumbs").unlink()
    status, _ = _post(client, route, gallery, "photo.png", imagegen.encode(imagegen.scene(5), "PNG"))
    assert status == "added"
    assert Image.objects.filter(gallery=gallery).count() == 1
