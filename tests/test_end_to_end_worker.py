"""The whole pipeline with nothing fake: uploads through the test client, a real
`celery worker` (with beat) on the real Redis, the real VGG16 (random weights),
real Annoy files, and "find similar" answered from the built index."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from gallery.models import DuplicateGroup, EmbeddingState, Gallery, GroupingRun, Image, IndexBuild
from tests import imagegen, live

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_uploads_are_embedded_indexed_and_near_duplicates_found_first(client, owner, tmp_path):
    live.require_redis()
    live.flush_broker()
    client.force_login(owner)
    client.post(reverse("gallery_create"), {"title": "Field cameras", "visibility": "private", "description": ""})
    gallery = Gallery.objects.get(owner=owner)

    original = imagegen.scene(3)
    files = [SimpleUploadedFile(f"scene-{s}.jpg", imagegen.jpeg(s), "image/jpeg") for s in (0, 1, 2, 3, 4, 5)]
    files.append(
        SimpleUploadedFile("scene-3-copy.jpg", imagegen.encode(imagegen.near_duplicate(original, 1)), "image/jpeg")
    )
    files.append(SimpleUploadedFile("notes.jpg", b"these are not image bytes", "image/jpeg"))
    response = client.post(
        reverse("gallery_upload", args=[gallery.slug]), {"images": files}, HTTP_ACCEPT="application/json"
    )
    results = {r["name"]: r for r in response.json()["results"]}
    assert response.status_code == 200
    assert [results[f"scene-{s}.jpg"]["status"] for s in range(6)] == ["added"] * 6
    assert results["scene-3-copy.jpg"]["status"] == "added"
    assert results["scene-3-copy.jpg"]["looks_like"]["name"] == "scene-3.jpg"  # told at upload, by its hash
    assert results["notes.jpg"]["status"] == "rejected"
    assert "not an image" in results["notes.jpg"]["message"]
    assert Image.objects.filter(gallery=gallery).count() == 7

    with live.Worker(tmp_path) as worker:
        live.wait_for(
            lambda: Image.objects.filter(gallery=gallery, embedding_state=EmbeddingState.READY).count() == 7,
            timeout=240,
            message="7 images embedded",
            worker=worker,
        )
        build = live.wait_for(
            lambda: IndexBuild.objects.filter(gallery=gallery, status="ready", item_count=7).first(),
            timeout=60,
            message="an index build with 7 items",
            worker=worker,
        )
        # The index worker groups the build's near-duplicates next.
        run = live.wait_for(
            lambda: GroupingRun.objects.filter(gallery=gallery, build__item_count=7).first(),
            timeout=60,
            message="the near-duplicate groups of the build",
            worker=worker,
        )
    assert run.status == "ready" and run.group_count == 1
    (group,) = DuplicateGroup.objects.filter(gallery=gallery)
    assert sorted(m.image.original_name for m in group.members.select_related("image")) == [
        "scene-3-copy.jpg",
        "scene-3.jpg",
    ]
    assert group.keeper.original_name == "scene-3.jpg"  # the larger picture
    assert (tmp_path / "index" / str(gallery.pk) / f"v{build.version:06d}.ann").is_file()
    vectors = [img.vector for img in Image.objects.filter(gallery=gallery)]
    assert all(v.shape == (512,) and abs(float((v * v).sum()) - 1.0) < 1e-4 for v in vectors)

    query = Image.objects.get(gallery=gallery, original_name="scene-3-copy.jpg")
    response = client.get(reverse("api_similar", args=[query.pk]))
    names = [r["name"] for r in response.json()["results"]]
    assert names[0] == "scene-3.jpg"
    assert len(names) == 6 and "scene-3-copy.jpg" not in names
    distances = [r["distance"] for r in response.json()["results"]]
    assert distances == sorted(distances)

    page = client.get(reverse("image_similar", args=[query.pk]))
    assert page.status_code == 200
    assert page.context["matches"][0].image.original_name == "scene-3.jpg"
