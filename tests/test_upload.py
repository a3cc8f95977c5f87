"""Uploading many files in one request: each lands or fails alone, and embedding is queued."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from gallery import services, tasks
from gallery.models import EmbeddingState, Image
from tests import imagegen

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch):
    calls = []
    monkeypatch.setattr(tasks.embed_images, "delay", lambda ids: calls.append(list(ids)))
    return calls


def test_many_files_in_one_request_land_with_their_facts(client, owner, queued, django_capture_on_commit_callbacks):
    gallery = services.gallery_create(owner=owner, title="G")
    client.force_login(owner)
    files = [SimpleUploadedFile(f"s{i}.jpg", imagegen.jpeg(i, size=(300 + i, 200)), "image/jpeg") for i in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("gallery_upload", args=[gallery.slug]), {"images": files})
    assert response.status_code == 302
    images = list(Image.objects.filter(gallery=gallery).order_by("original_name"))
    assert [i.original_name for i in images] == ["s0.jpg", "s1.jpg", "s2.jpg"]
    assert [(i.width, i.height) for i in images] == [(300, 200), (301, 200), (302, 200)]
    assert all(i.embedding_state == EmbeddingState.PENDING and len(i.sha256) == 64 for i in images)
    assert all(i.thumbnail and i.content_type == "image/jpeg" and i.uploader == owner for i in images)
    assert sorted(pk for call in queued for pk in call) == sorted(i.pk for i in images)


def test_a_non_image_fails_alone_with_a_reason(client, owner, queued):
    gallery = services.gallery_create(owner=owner, title="G")
    client.force_login(owner)
    files = [
        SimpleUploadedFile("good.jpg", imagegen.jpeg(1), "image/jpeg"),
        SimpleUploadedFile("readme.jpg", b"hello, I am text", "image/jpeg"),
    ]
    response = client.post(
        reverse("gallery_upload", args=[gallery.slug]), {"images": files}, HTTP_ACCEPT="application/json"
    )
    results = {r["name"]: r for r in response.json()["results"]}
    assert results["good.jpg"]["status"] == "added"
    assert results["readme.jpg"]["status"] == "rejected" and "not an image" in results["readme.jpg"]["message"]
    assert list(Image.objects.values_list("original_name", flat=True)) == ["good.jpg"]


def test_the_same_file_twice_is_reported_as_a_duplicate(client, owner, queued):
    gallery = services.gallery_create(owner=owner, title="G")
    client.force_login(owner)
    data = imagegen.jpeg(5)
    url = reverse("gallery_upload", args=[gallery.slug])
    client.post(url, {"images": [SimpleUploadedFile("a.jpg", data)]}, HTTP_ACCEPT="application/json")
    response = client.post(url, {"images": [SimpleUploadedFile("b.jpg", data)]}, HTTP_ACCEPT="application/json")
    result = response.json()["results"][0]
    assert result["status"] == "duplicate" and "a.jpg" in result["message"]
    assert Image.objects.count() == 1


def test_only_the_owner_may_upload(client, owner, other, queued):
    gallery = services.gallery_create(owner=owner, title="G", visibility="public")
    client.force_login(other)
    response = client.post(
        reverse("gallery_upload", args=[gallery.slug]), {"images": [SimpleUploadedFile("a.jpg", imagegen.jpeg(1))]}
    )
    assert response.status_code == 404
    assert not Image.objects.exists()


def test_a_broker_outage_does_not_fail_the_upload(client, owner, monkeypatch, django_capture_on_commit_callbacks):
    def broker_down(ids):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(tasks.embed_images, "delay", broker_down)
    gallery = services.gallery_create(owner=owner, title="G")
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("gallery_upload", args=[gallery.slug]),
            {"images": [SimpleUploadedFile("a.jpg", imagegen.jpeg(1))]},
            HTTP_ACCEPT="application/json",
        )
    assert response.json()["results"][0]["status"] == "added"
    assert Image.objects.get().embedding_state == EmbeddingState.PENDING
