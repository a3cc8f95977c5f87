"""Exports built by a real `celery worker` on the real Redis, from vectors the real VGG16 (random
weights) computed: asked on the page, queued on commit, built on the index queue, downloaded."""

import csv
import io
import json
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from gallery.models import EmbeddingState, Export, Gallery, Image, IndexBuild
from tests import imagegen, live

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_worker_builds_an_embeddings_export_of_real_vgg16_vectors(client, owner, tmp_path):
    live.require_redis()
    live.flush_broker()
    client.force_login(owner)
    client.post(reverse("gallery_create"), {"title": "Export me", "visibility": "private", "description": ""})
    gallery = Gallery.objects.get(owner=owner)
    files = [SimpleUploadedFile(f"scene-{s}.jpg", imagegen.jpeg(s), "image/jpeg") for s in range(5)]
    response = client.post(
        reverse("gallery_upload", args=[gallery.slug]), {"images": files}, HTTP_ACCEPT="application/json"
    )
    assert [r["status"] for r in response.json()["results"]] == ["added"] * 5

    with live.Worker(tmp_path) as worker:
        live.wait_for(
            lambda: Image.objects.filter(gallery=gallery, embedding_state=EmbeddingState.READY).count() == 5,
            timeout=240,
            message="5 images embedded",
            worker=worker,
        )
        live.wait_for(
            lambda: IndexBuild.objects.filter(gallery=gallery, status="ready", item_count=5).exists(),
            timeout=90,
            message="an index build with 5 items",
            worker=worker,
        )
        ask = reverse("gallery_export_create", args=[gallery.slug])
        assert client.post(ask, {"kind": "embeddings"}).status_code == 302
        assert client.post(ask, {"kind": "index"}).status_code == 302
        done = live.wait_for(
            lambda: Export.objects.filter(gallery=gallery, status__in=["ready", "failed"]).count() == 2,
            timeout=120,
            message="both exports built",
            worker=worker,
        )
        assert done
    embeddings = Export.objects.get(gallery=gallery, kind="embeddings")
    index = Export.objects.get(gallery=gallery, kind="index")
    assert (embeddings.status, index.status) == ("ready", "ready"), (embeddings.error, index.error)
    assert "build_export" in worker.output()

    response = client.get(reverse("gallery_export_download", args=[gallery.slug, embeddings.pk]))
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    matrix = np.load(io.BytesIO(archive.read("embeddings.npy")), allow_pickle=False)
    rows = list(csv.DictReader(io.TextIOWrapper(archive.open("ids.csv"), encoding="utf-8")))
    manifest = json.loads(archive.read("manifest.json"))
    images = {image.pk: image for image in Image.objects.filter(gallery=gallery)}
    assert matrix.shape == (5, 512) and matrix.dtype == np.float32
    assert [int(r["id"]) for r in rows] == sorted(images)
    np.testing.assert_array_equal(matrix, np.stack([images[int(r["id"])].vector for r in rows]))
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-4)  # VGG16's unit vectors
    assert [r["original_name"] for r in rows] == [images[int(r["id"])].original_name for r in rows]
    version = images[int(rows[0]["id"])].embedding_version
    assert manifest["embedding_version"] == version == embeddings.embedding_version
    assert version.startswith("vgg16") and manifest["backbone"] == "vgg16"
    assert (manifest["dim"], manifest["count"]) == (512, 5)

    build = IndexBuild.objects.get(gallery=gallery, status="ready")
    snapshot = zipfile.ZipFile(io.BytesIO(b"".join(client.get(
        reverse("gallery_export_download", args=[gallery.slug, index.pk])
    ).streaming_content)))  # fmt: skip
    assert json.loads(snapshot.read("manifest.json"))["checksum"] == build.checksum
    assert f"v{build.version:06d}.ann" in snapshot.namelist()
