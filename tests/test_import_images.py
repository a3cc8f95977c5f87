"""`manage.py import_images PATH --gallery SLUG [--owner USER]` and `manage.py embed --gallery SLUG`:
a folder walked recursively, duplicates skipped by content, rejects explained, embedding queued
in batches; re-embedding on request."""

import io

import pytest
from django.core.management import CommandError, call_command

from gallery import services
from gallery.models import EmbeddingState, Gallery, Image
from tests import imagegen

pytestmark = pytest.mark.django_db


@pytest.fixture
def cli(django_capture_on_commit_callbacks):
    """Run a management command; return its output. On-commit work runs as after a real commit."""

    def call(name, *args, **options):
        out = io.StringIO()
        with django_capture_on_commit_callbacks(execute=True):
            call_command(name, *args, stdout=out, **options)
        return out.getvalue()

    return call


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    (root / "2019" / "summer").mkdir(parents=True)
    (root / "2020").mkdir()
    (root / ".thumbnails").mkdir()
    (root / "a.jpg").write_bytes(imagegen.jpeg(1))
    (root / "2019" / "b.JPEG").write_bytes(imagegen.jpeg(2))
    (root / "2019" / "summer" / "c.png").write_bytes(imagegen.encode(imagegen.scene(3), "PNG"))
    (root / "2020" / "d.webp").write_bytes(imagegen.encode(imagegen.scene(4), "WEBP"))
    (root / "2020" / "a-again.jpg").write_bytes(imagegen.jpeg(1))  # same bytes as a.jpg
    (root / "2020" / "notes.jpg").write_bytes(b"shopping list, not a picture")
    (root / "2020" / "readme.txt").write_text("not an image type: not even looked at")
    (root / ".thumbnails" / "x.jpg").write_bytes(imagegen.jpeg(5))  # hidden folder: skipped
    return root


def test_it_creates_the_gallery_imports_the_folder_recursively_and_summarises(folder, owner, queued, cli):
    output = cli("import_images", str(folder), gallery="holidays", owner="owner", no_progress=True)

    gallery = Gallery.objects.get(slug="holidays")
    assert gallery.owner == owner and not gallery.is_public
    assert "Created private gallery “holidays” owned by owner" in output
    names = sorted(Image.objects.filter(gallery=gallery).values_list("original_name", flat=True))
    assert names == ["a.jpg", "b.JPEG", "c.png", "d.webp"]
    assert "4 added, 1 duplicate(s) skipped, 1 rejected, of 6 file(s)" in output
    assert "rejected 2020/notes.jpg:" in output
    assert all(img.embedding_state == EmbeddingState.PENDING for img in Image.objects.all())


def test_it_queues_embedding_in_task_sized_batches(folder, owner, queued, settings, cli):
    settings.IMAGESEARCH_EMBED_BATCH_SIZE = 1  # a task of 4 images
    for seed in range(10, 16):
        (folder / f"more-{seed}.jpg").write_bytes(imagegen.jpeg(seed))

    cli("import_images", str(folder), gallery="holidays", owner="owner", no_progress=True)

    ids = sorted(Image.objects.values_list("pk", flat=True))
    assert len(ids) == 10
    assert [len(batch) for batch in queued] == [4, 4, 2]
    assert sorted(pk for batch in queued for pk in batch) == ids


def test_running_it_again_adds_nothing_and_queues_nothing(folder, owner, queued, cli):
    cli("import_images", str(folder), gallery="holidays", owner="owner", no_progress=True)
    queued.clear()

    output = cli("import_images", str(folder), gallery="holidays", no_progress=True)

    assert "0 added, 5 duplicate(s) skipped, 1 rejected" in output
    assert Image.objects.count() == 4
    assert queued == []


def test_it_draws_a_progress_bar(folder, owner, queued, capsys, cli):
    cli("import_images", str(folder), gallery="holidays", owner="owner")
    err = capsys.readouterr().err
    assert "6/6" in err and "img" in err


def test_it_loads_photo_sized_jpegs_with_their_class_folders(tmp_path, owner, queued, cli):
    # As a photo collection: class folders, landscape and portrait (generated, no data outside the repository).
    src = tmp_path / "corel"
    for cls in ("buses", "flowers"):
        (src / cls).mkdir(parents=True)
        for i, size in enumerate([(384, 256), (256, 384), (384, 256)]):
            (src / cls / f"{cls}-{i}.jpg").write_bytes(imagegen.photo_jpeg(cls, i, size))

    output = cli("import_images", str(src), gallery="corel", owner="owner", no_progress=True)

    assert "6 added, 0 duplicate(s) skipped, 0 rejected" in output
    assert Image.objects.filter(width__in=[256, 384], height__in=[256, 384]).count() == 6


def test_a_missing_gallery_without_an_owner_is_an_error(folder, owner, queued, cli):
    with pytest.raises(CommandError, match="Pass --owner"):
        cli("import_images", str(folder), gallery="nowhere", no_progress=True)
    assert not Gallery.objects.exists()


def test_it_refuses_a_gallery_of_someone_else(folder, owner, other, queued, cli):
    services.gallery_create(owner=other, title="theirs")
    with pytest.raises(CommandError, match="belongs to other"):
        cli("import_images", str(folder), gallery="theirs", owner="owner", no_progress=True)
    assert not Image.objects.exists()


def test_an_unknown_owner_or_path_is_an_error(folder, owner, tmp_path, queued, cli):
    with pytest.raises(CommandError, match="No user"):
        cli("import_images", str(folder), gallery="x", owner="nobody", no_progress=True)
    with pytest.raises(CommandError, match="does not exist"):
        cli("import_images", str(tmp_path / "nope"), gallery="x", owner="owner", no_progress=True)


def test_embed_queues_every_image_of_the_gallery_again(folder, owner, queued, cli):
    cli("import_images", str(folder), gallery="holidays", owner="owner", no_progress=True)
    ids = sorted(Image.objects.values_list("pk", flat=True))
    services.images_embed(image_ids=ids)
    assert Image.objects.filter(embedding_state=EmbeddingState.READY).count() == 4
    queued.clear()

    output = cli("embed", gallery="holidays")

    assert "4 image(s) queued" in output
    assert Image.objects.filter(embedding_state=EmbeddingState.PENDING).count() == 4
    assert sorted(pk for batch in queued for pk in batch) == ids
    assert services.images_embed(image_ids=ids) == 4


def test_embed_failed_retries_only_the_failed_images(folder, owner, queued, cli):
    cli("import_images", str(folder), gallery="holidays", owner="owner", no_progress=True)
    first, *rest = sorted(Image.objects.values_list("pk", flat=True))
    Image.objects.filter(pk=first).update(embedding_state=EmbeddingState.FAILED, embedding_error="x")
    Image.objects.filter(pk__in=rest).update(embedding_state=EmbeddingState.READY)
    queued.clear()

    output = cli("embed", gallery="holidays", failed=True)

    assert "1 failed image(s) queued again" in output
    assert queued == [[first]]
    assert Image.objects.get(pk=first).embedding_state == EmbeddingState.PENDING


def test_embed_names_an_unknown_gallery(db):
    with pytest.raises(CommandError, match="No gallery"):
        call_command("embed", gallery="nowhere")
